"""``make bench``: the service and a parse-only baseline, loaded by wrk with the same bodies.

One run starts both servers (uvicorn, one worker each; the service with auth off and its SQLite
audit database migrated), checks that each answers every workload with 200, then loads each
workload at every concurrency, baseline and service back to back so the ratio compares like with
like on a noisy machine. It prints a table and the issue-6 targets, and writes
``<out>.json`` and ``<out>.png`` (default ``bench/results/latest``).

Exit status: 0 when every request succeeded (targets missed are reported, not failed; add
``--strict`` to fail on them), 1 on any error (a non-2xx answer, a socket error, a server that
died), 2 on bad arguments.

    python -m bench.run                  # full run, a few minutes
    python -m bench.run --smoke          # the harness in a few seconds (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.loadgen import LoadResult, WrkError, ensure_wrk, run_wrk
from bench.servers import (
    REPO_ROOT,
    Server,
    ServerError,
    cpu_seconds,
    peak_rss_mb,
    placement,
    BASELINE_APPS,
    start_baseline,
    start_service,
    wait_live,
)
from bench.workloads import DEFAULT_FIXTURES, SERVICE_ID, Workload, build_workloads

__all__ = ["main"]

CALL_PATH = f"/cds-services/{SERVICE_ID}"


class BenchError(RuntimeError):
    """Something other than speed went wrong; the run is not valid."""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny durations and sizes: checks the harness, not speed")
    parser.add_argument("--workloads", default="typical,heavy,sweep", help="comma-separated: typical, heavy, sweep")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 8, 32], help="for typical and heavy (default 1,8,32)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--sweep", type=_int_list, default=[10, 100, 1000, 10000], help="sweep sizes in resources")
    parser.add_argument("--sweep-concurrency", type=int, default=1, help="concurrency of the sweep (default 1)")
    parser.add_argument("--sweep-duration", type=int, default=5, help="seconds per sweep run (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="back-to-back pairs per cell; the median ratio is kept")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load per server and workload")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="the shared FHIR fixtures directory")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest", help="results path without suffix")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and wrk to separate CPUs")
    parser.add_argument(
        "--nice", type=int, default=-10, help="niceness of the servers and wrk (default -10 as root: less noise from other work)"
    )
    parser.add_argument(
        "--baseline", choices=sorted(BASELINE_APPS), default="fastapi",
        help="the parse-only app: on FastAPI like the service (default), or on bare Starlette (the server's floor)",
    )
    parser.add_argument(
        "--validation-cache", type=int, metavar="N",
        help="the service's CDS_VALIDATION_CACHE_SIZE (default: the service's default; 0 validates every resource of every call)",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.concurrency, args.duration, args.warmup = [1, 8], 1, 0
        args.sweep, args.sweep_duration = [10, 1000], 1
        if args.out == build_parser().get_default("out"):
            args.out = REPO_ROOT / "bench" / "results" / "smoke"
    try:
        ensure_wrk(install=not args.no_install)
        workloads = build_workloads(args.fixtures, names=args.workloads.split(","), sweep_sizes=args.sweep)
        results = _run(args, workloads)
    except (BenchError, ServerError, WrkError, FileNotFoundError, ValueError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    missed = [t for t in results["targets"] if t["met"] is False]
    return 3 if args.strict and missed else 0


def _run(args: argparse.Namespace, workloads: list[Workload]) -> dict[str, Any]:
    server_cpus, load_cpus = _cpu_split(pin=not args.no_pin)
    server_prefix, load_prefix = placement(server_cpus, nice=args.nice), placement(load_cpus, nice=args.nice)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="back-knee-bench-") as scratch:
        tmp = Path(scratch)
        bodies = {w.name: tmp / f"{w.name}.json" for w in workloads}
        for workload in workloads:
            bodies[workload.name].write_bytes(workload.body)
        database = tmp / "audit.sqlite3"
        env = _service_env(tmp, database=database, max_body=max(len(w.body) for w in workloads))
        if args.validation_cache is not None:
            env["CDS_VALIDATION_CACHE_SIZE"] = str(args.validation_cache)
        _migrate(env)
        service = start_service(env=env, log_path=tmp / "service.log", prefix=server_prefix)
        baseline = start_baseline(log_path=tmp / "baseline.log", prefix=server_prefix, kind=args.baseline)
        try:
            wait_live(service)
            wait_live(baseline)
            checked: dict[str, dict[str, Any]] = {}
            runs, rss_after_heavy = _load(args, workloads, bodies, service, baseline, load_prefix, checked)
            rss_final = peak_rss_mb(service.pid)
            rss_baseline = peak_rss_mb(baseline.pid)
        except (BenchError, WrkError) as exc:
            raise BenchError(f"{exc}\n--- service log (last lines) ---\n{service.log_tail()}") from None
        finally:
            service.stop()
            baseline.stop()
        audit_rows = _audit_rows(database)
    served = sum(r.service_requests for r in runs)  # every round's: each is in the audit trail
    sweep_runs = [r for r in runs if r.workload.startswith("sweep-")]
    sweep_points = [(r.resources, r.service.p50_ms) for r in sweep_runs]
    # The baseline's own slope tells how much of the service's comes from receiving and parsing.
    baseline_sweep_points = [(r.resources, r.baseline.p50_ms) for r in sweep_runs]
    targets = report.evaluate_targets(runs, sweep_points=sweep_points, rss_after_heavy_mb=rss_after_heavy)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(_read_text("/proc/cpuinfo")),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "servers_on_cpus": server_cpus,
            "wrk_on_cpus": load_cpus,
            "server_command_prefix": server_prefix,
            "python": platform.python_version(),
            "uvicorn": _uvicorn_choices(),
            "commit": _git_commit(),
        },
        "settings": {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "sweep_sizes": args.sweep,
            "sweep_concurrency": args.sweep_concurrency,
            "sweep_duration_s": args.sweep_duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "smoke": args.smoke,
            "baseline": args.baseline,
            "validation_cache": args.validation_cache,
        },
        "workloads": [
            {"name": w.name, "resources": w.resources, "body_bytes": len(w.body), "description": w.description, **checked[w.name]}
            for w in workloads
        ],
        "runs": [report.run_record(r) for r in runs],
        "sweep": {
            "points_p50_ms": sweep_points,
            "loglog_slopes": [round(s, 3) for s in report.sweep_slopes(sweep_points)],
            "baseline_points_p50_ms": baseline_sweep_points,
            "baseline_loglog_slopes": [round(s, 3) for s in report.sweep_slopes(baseline_sweep_points)],
            "marginal_us_per_resource": [round(c, 2) for c in report.marginal_costs_us(sweep_points)],
        },
        "rss_mb": {"after_heavy": rss_after_heavy, "after_all": round(rss_final, 1), "baseline_after_all": round(rss_baseline, 1)},
        "audit": {"service_requests": served, "invocation_rows": audit_rows},
        "targets": [
            {"name": t.name, "value": t.value, "limit": t.limit, "met": t.met} for t in targets
        ],
    }
    _print_summary(results, runs, targets, workloads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    report.write_plot(png_path, runs=runs, sweep_runs=sweep_runs)
    print(f"\nwrote {_shown(json_path)} and {_shown(png_path)}")
    return results


def _load(
    args: argparse.Namespace,
    workloads: list[Workload],
    bodies: dict[str, Path],
    service: Server,
    baseline: Server,
    load_prefix: list[str],
    checked: dict[str, dict[str, Any]],
) -> tuple[list[report.Run], float | None]:
    """Each workload in order: checked once, warmed up, then loaded; ``checked`` collects the checks.

    A workload is first sent just before its own load, so the peak RSS read after ``heavy`` has
    not yet seen the sweep's larger bodies.
    """
    runs: list[report.Run] = []
    rss_after_heavy: float | None = None
    for workload in workloads:
        checked[workload.name] = _check(service, baseline, workload)
        is_sweep = workload.name.startswith("sweep-")
        concurrencies = [args.sweep_concurrency] if is_sweep else args.concurrency
        duration = args.sweep_duration if is_sweep else args.duration
        body = bodies[workload.name]
        if args.warmup and not is_sweep:
            for server in (baseline, service):
                _measure(server, body, concurrency=max(concurrencies), duration=args.warmup, prefix=load_prefix, label=workload.name)
        for concurrency in concurrencies:
            rounds: list[report.Run] = []
            for _ in range(args.rounds):
                measured = {
                    server.name: _measure(
                        server, body, concurrency=concurrency, duration=duration, prefix=load_prefix, label=workload.name
                    )
                    for server in (baseline, service)
                }
                run = report.Run(workload.name, workload.resources, concurrency, measured["service"], measured["baseline"])
                print(
                    f"  {workload.name:<12} c={concurrency:<3} service {run.service.rps:8.1f} req/s p99 {run.service.p99_ms:7.2f} ms"
                    f" | baseline {run.baseline.rps:8.1f} req/s | ratio {run.ratio:.3f} cpu ratio {run.cpu_ratio or 0:.3f}",
                    flush=True,
                )
                rounds.append(run)
            runs.append(report.median_round(rounds))
        if workload.name == "heavy":
            rss_after_heavy = round(peak_rss_mb(service.pid), 1)
    return runs, rss_after_heavy


def _measure(server: Server, body: Path, *, concurrency: int, duration: int, prefix: list[str], label: str) -> LoadResult:
    if server.process.poll() is not None:
        raise BenchError(f"{server.name} exited with {server.process.returncode} during the run")
    cpu_before = cpu_seconds(server.pid)
    result = run_wrk(server.url(CALL_PATH), body, concurrency=concurrency, duration_s=duration, prefix=prefix)
    result = dataclasses.replace(result, server_cpu_s=cpu_seconds(server.pid) - cpu_before)
    if result.error_count:
        raise BenchError(f"{server.name} on {label} c={concurrency}: wrk counted errors {result.errors}")
    if result.requests == 0:
        raise BenchError(f"{server.name} on {label} c={concurrency}: no request completed in {duration} s; lengthen the run")
    return result


def _check(service: Server, baseline: Server, workload: Workload) -> dict[str, Any]:
    """One request to each server: both must answer 200; the service with a CDS Hooks cards list."""
    _post(baseline, workload)
    started = time.perf_counter()
    answer = _post(service, workload)
    first_ms = (time.perf_counter() - started) * 1000
    cards = answer.get("cards")
    if not isinstance(cards, list):
        raise BenchError(f"service answered {workload.name} without a cards list: {str(answer)[:300]}")
    return {
        "cards": len(cards),
        "card_summaries": [card.get("summary") for card in cards if isinstance(card, dict)],
        "first_request_ms": round(first_ms, 1),
    }


def _post(server: Server, workload: Workload) -> dict[str, Any]:
    request = urllib.request.Request(
        server.url(CALL_PATH), data=workload.body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode(errors="replace")
        raise BenchError(f"{server.name} answered {workload.name} with HTTP {exc.code}: {detail}") from None


def _service_env(tmp: Path, *, database: Path, max_body: int) -> dict[str, str]:
    """The service's configuration: auth off, SQLite audit in ``tmp``, bodies up to the largest workload."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDS_")}
    env.update(
        CDS_AUTH="off",
        CDS_DATABASE_URL=f"sqlite:///{database}",
        CDS_PATIENT_KEY="bench-patient-key-0123456789abcdef",
        CDS_PATIENT_KEY_FILE=str(tmp / "patient-key"),
        CDS_LOG_FORMAT="json",
        # The sweep's largest body is past the 5 MiB default on purpose; the limit moves with it.
        CDS_MAX_BODY_BYTES=str(max(5 * 1024 * 1024, max_body + 1024 * 1024)),
    )
    return env


def _migrate(env: dict[str, str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise BenchError(f"`back-knee-cds db upgrade` failed: {(completed.stderr or completed.stdout).strip()}")


def _audit_rows(database: Path) -> int | None:
    """Rows in the invocation audit table after shutdown (the queue is flushed on stop)."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as connection:
        tables = [name for (name,) in connection.execute("select name from sqlite_master where type = 'table'")]
        invocation = next((t for t in tables if "invocation" in t.lower()), None)
        if invocation is None:
            return None
        (count,) = connection.execute(f'select count(*) from "{invocation}"').fetchone()
    return int(count)


def _cpu_split(*, pin: bool) -> tuple[list[int], list[int]]:
    """Servers on one CPU, wrk on another, when there are two and taskset exists."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return [], []
    return [cpus[0]], [cpus[1]]


def cpu_model(cpuinfo: str) -> str | None:
    """The first CPU's name, family and model from /proc/cpuinfo: which machine a result came from.

    Ratios move between machines (0.22-0.29 on typical so far), so results say what they ran on.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    family, model = fields.get("cpu family"), fields.get("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _uvicorn_choices() -> dict[str, str]:
    """The event loop ``serve`` sets (the baseline gets the same) and the HTTP parser uvicorn picks ("auto")."""
    from uvicorn.config import Config

    from service.cli import UVICORN_OPTIONS

    config = Config(app="bench.baseline_app:app", loop=UVICORN_OPTIONS["loop"])
    config.load()
    factory = config.get_loop_factory()
    loop = f"{factory.__module__}.{factory.__qualname__}" if factory else "asyncio"
    return {"loop": loop, "http": config.http_protocol_class.__name__}


def _git_commit() -> str | None:
    completed = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return completed.stdout.strip() or None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _print_summary(
    results: dict[str, Any], runs: list[report.Run], targets: list[report.Target], workloads: list[Workload]
) -> None:
    machine = results["machine"]
    print(f"\nback-knee-cds bench ({results['started']}, commit {machine['commit']}, {machine['cpus']} CPUs"
          f" ({machine['cpu'] or 'CPU model unknown'}),"
          f" load average {machine['load_average_before'][0]} -> {machine['load_average_after'][0]};"
          f" uvicorn: {machine['uvicorn']['loop']}, {machine['uvicorn']['http']})")
    settings = results["settings"]
    cache = settings["validation_cache"]
    print(f"  baseline: {settings['baseline']} ({BASELINE_APPS[settings['baseline']]});"
          f" service validation cache: {'default' if cache is None else cache}")
    for workload, info in zip(workloads, results["workloads"]):
        print(f"  {workload.name}: {workload.description}; {len(workload.body) / 1024:.0f} KiB; {info['cards']} cards")
    print()
    print(report.format_table(runs))
    sweep = results["sweep"]
    if sweep["loglog_slopes"]:
        print(f"\nsweep log-log slopes {sweep['loglog_slopes']}; marginal cost us/resource {sweep['marginal_us_per_resource']}")
        print(f"baseline (receive and parse only) log-log slopes {sweep['baseline_loglog_slopes']}")
    rss = results["rss_mb"]
    print(
        f"service worker peak RSS: after heavy {rss['after_heavy']} MiB, after all {rss['after_all']} MiB"
        f" (baseline after all: {rss['baseline_after_all']} MiB)"
    )
    audit = results["audit"]
    print(f"audit: {audit['invocation_rows']} invocation rows for {audit['service_requests']} measured service requests")
    print("\ntargets (issue 6):")
    print(report.format_targets(targets))


if __name__ == "__main__":
    sys.exit(main())
