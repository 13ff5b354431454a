"""Under ``serve --workers N`` a scrape of ``/metrics`` reaches one worker, and it reports every
worker's counts: a counter that read one worker's count, then another's, would look to Prometheus
like a reset on every scrape. Counts of a worker that died stay; its gauges leave the sums."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from bench.workloads import typical
from robustness.served import Served, free_port, serve, service_env
from service.metrics import MADE_BY_SERVE_ENV, MULTIPROCESS_ENV, RESERVED_FILE_BYTES, Metrics, SharedMetricsDirectory
from tests.cli import run_cli
from tests.conftest import REPO_ROOT, SHARED_FIXTURES

RISK = "/cds-services/back-knee-risk-factors"


def _samples(page: str) -> dict[str, float]:
    """``name{labels}`` -> value, for every sample line of a Prometheus text page."""
    found: dict[str, float] = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _series(page: str) -> set[str]:
    """The page's series, less ``*_created`` (prometheus_client writes those only for counts kept in
    memory: when a series began, which means nothing summed over processes)."""
    return {name for name in _samples(page) if not name.partition("{")[0].endswith("_created")}


def _scrape(served: Served) -> dict[str, float]:
    with urllib.request.urlopen(f"{served.base_url}/metrics", timeout=10) as response:
        return _samples(response.read().decode())


def _call(served: Served, body: bytes) -> int:
    request = urllib.request.Request(f"{served.base_url}{RISK}", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return int(response.status)


def _workers(served: Served) -> set[int]:
    """The processes uvicorn started for the workers (children of ``serve``) that have started their app."""
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children").read_text().split()
    started = served.log_path.read_text().count("Application startup complete.")
    workers = set()
    for pid in children:
        with suppress(FileNotFoundError):  # a child that ended since the list was read
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(int(pid))
    return workers if started >= len(workers) else set()


def _shared_directory(worker: int) -> Path:
    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0") if b"=" in item)
    return Path(environ[MADE_BY_SERVE_ENV.encode()].decode())


def _answered_by(directory: Path, worker: int) -> float:
    """Calls this worker has counted, read from its own file."""
    families = MultiProcessCollector.merge([str(directory / f"counter_{worker}.db")])
    return sum(sample.value for family in families for sample in family.samples if sample.name == "cds_requests_total")


def _counted(samples: dict[str, float]) -> tuple[float, float, float, float]:
    requests = samples.get('cds_requests_total{service="back-knee-risk-factors",status="200"}', 0.0)
    timed = samples.get('cds_request_seconds_count{service="back-knee-risk-factors",status="200"}', 0.0)
    cards = sum(value for name, value in samples.items() if name.startswith("cds_cards_total{"))
    lookups = sum(value for name, value in samples.items() if name.startswith("cds_validation_cache_lookups_total{"))
    return requests, timed, cards, lookups


def _until_both_started(served: Served) -> set[int]:
    deadline = time.monotonic() + 30
    while len(workers := _workers(served)) < 2:
        assert time.monotonic() < deadline, "two workers did not start"
        time.sleep(0.1)
    return workers


def test_every_scrape_counts_every_workers_calls_and_a_dead_workers_calls_stay(tmp_path: Path) -> None:
    body = typical(SHARED_FIXTURES).body
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'audit.sqlite3'}", CDS_MIGRATE_ON_START="true", CDS_LOG_LEVEL="INFO")
    with serve(env, log_path=tmp_path / "serve.log", workers=2, ready=True) as served:
        workers = _until_both_started(served)
        directory = _shared_directory(next(iter(workers)))
        # Concurrent calls until each worker has answered some: only then can a sum differ from one worker's count.
        calls = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while min(_answered_by(directory, worker) for worker in workers) == 0:
                assert calls < 400, "one worker answered every call"
                assert set(pool.map(lambda _: _call(served, body), range(16))) == {200}
                calls += 16
        scrapes = [_counted(_scrape(served)) for _ in range(8)]
        requests, timed, cards, lookups = scrapes[0]
        assert requests == timed == calls and cards >= calls and lookups > 0
        assert scrapes == [scrapes[0]] * len(scrapes)

        os.kill(next(iter(workers)), signal.SIGKILL)  # it answered some calls: their counts stay
        deadline = time.monotonic() + 30
        while not _workers(served) - workers:  # uvicorn starts a new one
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            time.sleep(0.1)
        assert all(_counted(_scrape(served)) == scrapes[0] for _ in range(4))
        assert _call(served, body) == 200
        assert _counted(_scrape(served))[0] == calls + 1
    assert served.process.returncode == 0
    assert not directory.exists()  # serve removed it when it stopped
    assert not served.server_errors()


# One process's counts in a shared directory: a request, a card, a lost audit record and the
# memo's reading. It then crashes (no shutdown), ends, or waits for a line on stdin before it ends.
_WORKER = """
import os, sys
from service.metrics import Metrics
metrics = Metrics()
hits, misses, entries = map(int, sys.argv[2:5])
metrics.watch_validation_memo(lambda: (hits, misses, entries))
metrics.record_request("back-knee-risk-factors", 200, 0.004)
metrics.record_card("risk-factors")
metrics.audit_lost.inc()
if sys.argv[1] == "crash":
    os._exit(0)
if sys.argv[1] == "wait":
    print("counted", flush=True)
    sys.stdin.readline()
"""
_RENDER = "import sys; from service.metrics import Metrics; sys.stdout.write(Metrics().render().decode())"


def _in_shared_directory(directory: Path, code: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROCESS_ENV: str(directory), MADE_BY_SERVE_ENV: str(directory)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env, text=True, **popen)  # type: ignore[call-overload]


@contextmanager
def _running_worker(directory: Path, hits: int, misses: int, entries: int) -> Iterator[None]:
    """A process that has counted in ``directory`` and keeps running until the block ends."""
    reading = (str(hits), str(misses), str(entries))
    worker = _in_shared_directory(directory, _WORKER, "wait", *reading, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert worker.stdout.readline() == "counted\n"  # type: ignore[union-attr]
        yield
    finally:
        worker.communicate("stop\n", timeout=60)


def _render(directory: Path) -> str:
    renderer = _in_shared_directory(directory, _RENDER, stdout=subprocess.PIPE)
    page, _ = renderer.communicate(timeout=60)
    assert renderer.returncode == 0
    return str(page)


def test_counts_add_up_over_processes_and_gauges_leave_with_their_process(tmp_path: Path) -> None:
    assert _in_shared_directory(tmp_path, _WORKER, "crash", "5", "2", "7").wait(timeout=60) == 0
    assert _in_shared_directory(tmp_path, _WORKER, "end", "10", "20", "30").wait(timeout=60) == 0
    with _running_worker(tmp_path, 1, 1, 3):
        samples = _samples(_render(tmp_path))
        assert samples['cds_requests_total{service="back-knee-risk-factors",status="200"}'] == 3
        assert samples['cds_cards_total{rule="risk-factors"}'] == 3
        assert samples['cds_validation_cache_lookups_total{result="hit"}'] == 5 + 10 + 1
        assert samples['cds_validation_cache_lookups_total{result="miss"}'] == 2 + 20 + 1
        # The crashed process and the one that ended no longer hold entries; the running one does.
        assert samples["cds_validation_cache_entries"] == 3
    after = _samples(_render(tmp_path))
    assert after.get("cds_validation_cache_entries", 0) == 0
    assert after['cds_requests_total{service="back-knee-risk-factors",status="200"}'] == 3


def test_the_shared_page_has_the_same_metrics_as_one_process(tmp_path: Path) -> None:
    metrics = Metrics()  # this test process keeps its counts in memory
    metrics.watch_validation_memo(lambda: (1, 1, 1))
    metrics.record_request("back-knee-risk-factors", 200, 0.004)
    metrics.record_card("risk-factors")
    metrics.audit_lost.inc()
    with _running_worker(tmp_path, 1, 1, 1):
        assert _series(_render(tmp_path)) == _series(metrics.render().decode())


def test_the_shared_directory_is_named_while_serving_and_removed_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, "/somewhere/else")
    shared = SharedMetricsDirectory()
    with shared as path:
        assert os.environ[MULTIPROCESS_ENV] == path and Path(path).is_dir()
        (Path(path) / "counter_1.db").write_bytes(b"")
    assert os.environ[MULTIPROCESS_ENV] == "/somewhere/else"
    assert not Path(path).exists()


def _must_not_serve(*args: object, **kwargs: object) -> None:
    raise AssertionError("serve went on without a directory for the workers' counts")


def test_no_directory_for_the_workers_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    monkeypatch.setattr("uvicorn.run", _must_not_serve)  # were the directory made, this fails instead of serving
    monkeypatch.setattr("service.logs.configure_logging", lambda *args: None)
    monkeypatch.setenv("CDS_AUTH", "off")
    monkeypatch.setenv("CDS_PATIENT_KEY", "served-test-patient-key-0123456789")
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    code, out, err = run_cli(capsys, "serve", "--workers", "2", "--port", "0")
    assert (code, out) == (2, "")
    assert err.startswith("error: --workers: cannot make a directory for the workers' shared /metrics counts (")
    assert err.count("\n") == 1


def _limit_file_size() -> None:
    """In the child before it runs: a file size limit, a full disk's stand-in (spawned workers inherit it)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the limit kills the process instead of failing the write
    resource.setrlimit(resource.RLIMIT_FSIZE, (RESERVED_FILE_BYTES // 2, RESERVED_FILE_BYTES // 2))


_RESERVE = """
import os, sys
from service.metrics import Metrics, MetricsRoomError, reserve_shared_files
try:
    reserve_shared_files()
except MetricsRoomError as exc:
    sys.exit(str(exc))
metrics = Metrics()
metrics.record_request("back-knee-risk-factors", 200, 0.004)
print(os.getpid())
"""


def test_a_worker_reserves_its_count_files_before_counting(tmp_path: Path) -> None:
    """Written through memory maps, a page a full disk has no room for kills the worker (SIGBUS)."""
    worker = _in_shared_directory(tmp_path, _RESERVE, stdout=subprocess.PIPE)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    for kind in ("counter", "histogram", "gauge_livesum"):
        allocated = (tmp_path / f"{kind}_{out.strip()}.db").stat().st_blocks * 512
        assert allocated >= RESERVED_FILE_BYTES, kind  # allocated, not a sparse file
    assert _samples(_render(tmp_path))['cds_requests_total{service="back-knee-risk-factors",status="200"}'] == 1


def test_no_room_for_the_count_files_is_one_line(tmp_path: Path) -> None:
    worker = _in_shared_directory(tmp_path, _RESERVE, stderr=subprocess.PIPE, preexec_fn=_limit_file_size)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert err == f"cannot reserve room for the /metrics counts in {tmp_path} (File too large)\n"


def test_a_directory_serve_did_not_make_is_not_summed(tmp_path: Path) -> None:
    """A PROMETHEUS_MULTIPROC_DIR set by someone else may hold earlier runs' files: one process reports its own counts."""
    assert _in_shared_directory(tmp_path, _WORKER, "end", "1", "1", "1").wait(timeout=60) == 0
    env = {**os.environ, MULTIPROCESS_ENV: str(tmp_path)}
    env.pop(MADE_BY_SERVE_ENV, None)
    own = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom service.metrics import Metrics\nm = Metrics()\n"
         "m.record_request('back-knee-risk-factors', 200, 0.004)\nsys.stdout.write(m.render().decode())"],
        cwd=REPO_ROOT, env=env, text=True, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert _samples(own.stdout)['cds_requests_total{service="back-knee-risk-factors",status="200"}'] == 1


def test_an_unreadable_count_file_is_skipped_not_a_failed_scrape(tmp_path: Path) -> None:
    assert _in_shared_directory(tmp_path, _WORKER, "end", "1", "1", "1").wait(timeout=60) == 0
    (tmp_path / "counter_999999999.db").write_bytes(b"")  # a worker killed while making its file
    (tmp_path / "other.db").write_bytes(b"not a count file")
    samples = _samples(_render(tmp_path))
    assert samples['cds_requests_total{service="back-knee-risk-factors",status="200"}'] == 1


def test_workers_that_cannot_start_stop_serve_with_exit_3_and_one_line_why(tmp_path: Path) -> None:
    """uvicorn stops every worker when one fails to start; serve exited 0 then, as if stopped on purpose."""
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'audit.sqlite3'}", CDS_MIGRATE_ON_START="true", TMPDIR=str(tmp_path))
    port = str(free_port())
    serving = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", port, "--workers", "2"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_limit_file_size, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = serving.communicate(timeout=60)  # before, workers failed and were restarted without end
    finally:
        with suppress(ProcessLookupError):
            os.killpg(serving.pid, signal.SIGKILL)  # serve and any worker it left
    assert serving.returncode == 3
    assert f"worker could not start: cannot reserve room for the /metrics counts in {tmp_path}/back-knee-cds-metrics-" in output
    assert "Traceback" not in output
    assert not list(tmp_path.glob("back-knee-cds-metrics-*"))
