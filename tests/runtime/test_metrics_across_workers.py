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
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.workloads import typical
from service.metrics import MULTIPROCESS_ENV, Metrics, SharedMetricsDirectory
from tests.cli import run_cli
from tests.conftest import REPO_ROOT, SHARED_FIXTURES
from tests.support.serve_process import Served, serve_process, wait_ready

RISK = "/cds-services/back-knee-risk-factors"
CALLS = 48


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
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=10) as response:
        return _samples(response.read().decode())


def _call(served: Served, body: bytes) -> int:
    request = urllib.request.Request(f"{served.url}{RISK}", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return int(response.status)


def _workers(served: Served) -> set[int]:
    """The processes uvicorn started for the workers (children of ``serve``)."""
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children").read_text().split()
    return {int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def _counted(samples: dict[str, float]) -> tuple[float, float, float]:
    requests = samples.get('cds_requests_total{service="back-knee-risk-factors",status="200"}', 0.0)
    cards = sum(value for name, value in samples.items() if name.startswith("cds_cards_total{"))
    lookups = sum(value for name, value in samples.items() if name.startswith("cds_validation_cache_lookups_total{"))
    return requests, cards, lookups


def test_every_scrape_counts_every_workers_calls_and_a_dead_workers_calls_stay(tmp_path: Path) -> None:
    body = typical(SHARED_FIXTURES).body
    with serve_process(tmp_path, "--workers", "2") as served:
        workers = _workers(served)
        assert len(workers) == 2
        # Concurrent calls, so both workers answer some (one at a time, one worker may take all).
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(lambda _: _call(served, body), range(CALLS))) == {200}
        scrapes = [_counted(_scrape(served)) for _ in range(8)]
        requests, cards, lookups = scrapes[0]
        assert requests == CALLS and cards >= CALLS and lookups > 0
        assert scrapes == [scrapes[0]] * len(scrapes)

        os.kill(next(iter(workers)), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(_workers(served) - workers) < 1:  # uvicorn starts a new one
            assert time.monotonic() < deadline, "no worker replaced the killed one"
            time.sleep(0.1)
        wait_ready(served)
        assert all(_counted(_scrape(served)) == scrapes[0] for _ in range(4))
        assert _call(served, body) == 200
        assert _counted(_scrape(served))[0] == CALLS + 1


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
    env = {**os.environ, MULTIPROCESS_ENV: str(directory)}
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


def test_no_directory_for_the_workers_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    monkeypatch.setattr("service.logs.configure_logging", lambda *args: None)
    monkeypatch.setenv("CDS_AUTH", "off")
    monkeypatch.setenv("CDS_PATIENT_KEY", "served-test-patient-key-0123456789")
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    code, out, err = run_cli(capsys, "serve", "--workers", "2", "--port", "0")
    assert (code, out) == (2, "")
    assert err.startswith("error: --workers: cannot make a directory for the workers' shared /metrics counts (")
    assert err.count("\n") == 1
