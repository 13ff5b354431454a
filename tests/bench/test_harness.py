"""The parts of the benchmark harness that do not need a load: wrk's output, targets, baseline."""

from __future__ import annotations

import importlib.util
import math
import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bench.baseline_app import app as fastapi_baseline
from bench.baseline_app import starlette_app as starlette_baseline
from bench.loadgen import LoadResult, WrkError, parse_wrk_output
from bench.report import Run, evaluate_targets, format_table, marginal_costs_us, median_round, sweep_slopes
from bench.run import _service_env, cpu_model
from bench.servers import cpu_seconds, start_baseline, start_service, wait_live
from tests.support.fastapi_solving import solved  # noqa: F401 (a fixture)

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1234/cds-services/back-knee-risk-factors
  1 threads and 8 connections
Requests/sec:   1234.00
BENCH_RESULT {"requests":2000,"duration_us":2000000,"bytes":1,"mean_us":900.5,"p50_us":800,"p90_us":1500,"p99_us":4000,"max_us":9000,"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":0}}
"""


def _result(rps: float, p99_ms: float = 1.0) -> LoadResult:
    return LoadResult(requests=int(rps * 10), duration_s=10, mean_ms=1, p50_ms=1, p90_ms=1, p99_ms=p99_ms, max_ms=p99_ms)


def test_wrk_result_line_is_read() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.rps == 1000
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (0.8, 4.0, 9.0)
    assert result.error_count == 3 and result.errors["status"] == 3


def test_wrk_output_without_result_line_is_an_error() -> None:
    with pytest.raises(WrkError, match="no BENCH_RESULT line"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused")


def test_sweep_slopes_tell_linear_from_quadratic() -> None:
    linear = [(10, 1.0), (100, 10.0), (1000, 100.0)]
    quadratic = [(10, 1.0), (100, 100.0)]
    assert [round(s, 6) for s in sweep_slopes(linear)] == [1.0, 1.0]
    assert math.isclose(sweep_slopes(quadratic)[0], 2.0)
    assert marginal_costs_us(linear) == pytest.approx([100.0, 100.0])


def test_targets_are_judged_on_the_measured_numbers() -> None:
    runs = [
        Run("typical", 36, 8, service=_result(400, p99_ms=12), baseline=_result(1000)),
        Run("heavy", 339, 1, service=_result(30), baseline=_result(100)),
        Run("heavy", 339, 8, service=_result(15), baseline=_result(100)),
    ]
    targets = {t.name: t for t in evaluate_targets(runs, sweep_points=[(10, 1.0), (100, 20.0)], rss_after_heavy_mb=150)}
    assert targets["typical c=8 throughput / baseline"].met is True
    assert targets["typical c=8 p99 (ms)"].met is True
    heavy = targets["heavy throughput / baseline (worst concurrency)"]
    assert heavy.value == pytest.approx(0.15) and heavy.met is False
    assert targets["sweep: steepest log-log slope of latency vs resources"].met is False
    assert targets["service worker peak RSS after heavy (MiB)"].met is True
    assert "typical" in format_table(runs)


def test_targets_not_measured_are_said_so() -> None:
    targets = evaluate_targets([], sweep_points=[], rss_after_heavy_mb=None)
    assert {t.met for t in targets} == {None}


@pytest.mark.parametrize("baseline", [fastapi_baseline, starlette_baseline], ids=["fastapi", "starlette"])
def test_baseline_only_parses_and_answers(baseline: object) -> None:
    with TestClient(baseline) as client:  # type: ignore[arg-type]
        response = client.post("/cds-services/back-knee-risk-factors", content=b'{"hook": "patient-view", "context": {}}')
        assert client.get("/health/live").status_code == 200
    assert response.status_code == 200
    assert response.json() == {"cards": [], "keys": 2}


def test_median_round_keeps_the_middle_ratio_and_all_ratios() -> None:
    rounds = [
        Run("typical", 36, 8, service=_result(300), baseline=_result(1000)),
        Run("typical", 36, 8, service=_result(500), baseline=_result(1000)),
        Run("typical", 36, 8, service=_result(400), baseline=_result(1000)),
    ]
    chosen = median_round(rounds)
    assert chosen.ratio == pytest.approx(0.4)
    assert chosen.round_ratios == (0.3, 0.5, 0.4)
    # The audit line compares the rows stored with every request the service answered, all rounds.
    assert chosen.service.requests == 4000 and chosen.service_requests == 12000
    assert rounds[0].service_requests == 3000


def test_cpu_per_request_and_the_cpu_ratio() -> None:
    service = LoadResult(requests=100, duration_s=1, mean_ms=1, p50_ms=1, p90_ms=1, p99_ms=1, max_ms=1, server_cpu_s=0.5)
    baseline = LoadResult(requests=400, duration_s=1, mean_ms=1, p50_ms=1, p90_ms=1, p99_ms=1, max_ms=1, server_cpu_s=0.4)
    run = Run("typical", 36, 1, service=service, baseline=baseline)
    assert service.cpu_ms_per_request == pytest.approx(5.0)
    assert run.cpu_ratio == pytest.approx(0.2)
    assert Run("typical", 36, 1, service=_result(1), baseline=_result(1)).cpu_ratio is None


def test_cpu_seconds_of_this_process_grow_with_work() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) > before


def test_the_fastapi_baseline_route_is_called_directly_like_the_service_hook_route(solved: list[str]) -> None:
    # A baseline route paying FastAPI's per-call parameter solving that the service's hook route
    # skips (tests/cdshooks/test_direct_route.py) would count that cost against the baseline alone.
    with TestClient(fastapi_baseline) as client:
        assert client.post("/cds-services/back-knee-risk-factors", json={"hook": "patient-view"}).status_code == 200
    assert solved == []


def test_baselines_are_served_with_the_service_gc_tuning() -> None:
    import gc

    from bench.servers import BASELINE_APPS
    from service.runtime import FIRST_GENERATION_THRESHOLD

    before = gc.get_threshold()
    try:
        for kind, target in BASELINE_APPS.items():
            module, name = target.split(":")
            served = getattr(importlib.import_module(module), name)()
            assert served is {"fastapi": fastapi_baseline, "starlette": starlette_baseline}[kind]
            assert gc.get_threshold()[0] == FIRST_GENERATION_THRESHOLD
            gc.set_threshold(*before)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _loaded_uvloop(pid: int) -> bool:
    """Whether the process has uvloop's extension mapped (uvicorn imports it only to run on it)."""
    return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text(encoding="ascii", errors="replace")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
def test_service_and_baseline_are_served_on_the_asyncio_loop(tmp_path: Path) -> None:
    # serve picks asyncio over uvloop for its tail latency (service.cli.UVICORN_OPTIONS); a baseline
    # left on uvloop would no longer be served the same way.
    env = _service_env(tmp_path, database=tmp_path / "audit.sqlite3", max_body=0)  # as make bench configures it
    servers = [
        start_service(env=env, log_path=tmp_path / "service.log"),
        start_baseline(log_path=tmp_path / "baseline.log"),
    ]
    try:
        for server in servers:
            wait_live(server)
            assert not _loaded_uvloop(server.pid), server.name
    finally:
        for server in servers:
            server.stop()
    assert importlib.util.find_spec("uvloop") is not None  # installed: "auto" would have picked it


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu vme

processor\t: 1
model name\t: Some Other CPU
"""


def test_cpu_model_names_the_first_processor_with_family_and_model() -> None:
    assert cpu_model(CPUINFO) == "AMD EPYC (family 25, model 17)"


def test_cpu_model_without_a_model_name_is_unknown() -> None:
    assert cpu_model("processor\t: 0\nfeatures\t: fp asimd\n") is None
    assert cpu_model("") is None
