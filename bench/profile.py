"""The service's request path in-process: a pyinstrument profile, or CPU time per request.

The app runs in this thread (lifespan included, SQLite audit in a temp directory) and receives
calls straight through ASGI (no HTTP server, no load generator), so what is left is the service's
own work. ``--measure`` prints CPU milliseconds per request (best of several rounds of process
time), which moves much less than wall-clock numbers on a machine shared with other work.

    python -m bench.profile --workload heavy --requests 200          # profile -> bench/results/
    python -m bench.profile --workload heavy --requests 200 --flat   # functions by own time
    python -m bench.profile --measure typical heavy sweep-1000       # CPU ms per request
    python -m bench.profile --measure sweep-1000 sweep-10000 --versus-baseline

``--versus-baseline`` also runs the parse-only baseline app (bench/baseline_app.py) in the same
thread, in rounds alternating with the service, and prints what the service adds to it: the
part of a call that is the service's own work, and how that grows with the prefetch size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.servers import REPO_ROOT
from bench.workloads import DEFAULT_FIXTURES, SERVICE_ID, Workload, heavy, sweep, typical
from service.logs import configure_logging

__all__ = ["checked_calls", "main", "running_app", "workload_named"]

PATH = f"/cds-services/{SERVICE_ID}"

Asgi = Any


def workload_named(name: str, fixtures: Path) -> Workload:
    if name == "typical":
        return typical(fixtures)
    if name == "heavy":
        return heavy(fixtures)
    if name.startswith("sweep-") and name[len("sweep-") :].isdigit():
        return sweep(fixtures, int(name[len("sweep-") :]))
    raise SystemExit(f"error: unknown workload '{name}'; use typical, heavy or sweep-N")


@asynccontextmanager
async def running_app(tmp: Path, *, max_body: int, tune_gc: bool) -> AsyncIterator[Asgi]:
    """The app as ``back-knee-cds serve`` builds it (migrated SQLite audit, auth off, GC tuned), lifespan running."""
    from service.app import create_app
    from service.settings import Settings

    database = f"sqlite:///{tmp / 'audit.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATABASE_URL=database, CDS_AUTH="off")
    subprocess.run([sys.executable, "-m", "service", "db", "upgrade"], cwd=REPO_ROOT, env=env, capture_output=True, check=False)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        auth="off",
        database_url=database,
        patient_key="bench-patient-key-0123456789abcdef",
        log_format="json",
        max_body_bytes=max(5 * 1024 * 1024, max_body + 1024 * 1024),
    )
    app = create_app(settings)
    if tune_gc:
        from service.runtime import tune_gc_for_serving

        tune_gc_for_serving()
    async with app.router.lifespan_context(app):
        yield app


async def _call(app: Asgi, body: bytes) -> int:
    """One POST through ASGI; the response status (the body is read and dropped)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def checked_calls(app: Asgi, body: bytes, count: int) -> None:
    for _ in range(count):
        status = await _call(app, body)
        if status != 200:
            raise SystemExit(f"error: the service answered {status}")


async def _profile(workload: Workload, *, requests: int, tmp: Path, html: bool, flat: bool, tune_gc: bool) -> str:
    from pyinstrument import Profiler

    async with running_app(tmp, max_body=len(workload.body), tune_gc=tune_gc) as app:
        await checked_calls(app, workload.body, 3)  # lazy imports and caches outside the profile
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        await checked_calls(app, workload.body, requests)
        profiler.stop()
    if html:
        return profiler.output_html()
    return profiler.output_text(unicode=True, show_all=False, flat=flat)


async def _measure(workloads: list[Workload], *, requests: int, rounds: int, tmp: Path, tune_gc: bool) -> list[str]:
    lines = []
    async with running_app(tmp, max_body=max(len(w.body) for w in workloads), tune_gc=tune_gc) as app:
        for workload in workloads:
            count = _calls(workload, requests)
            await checked_calls(app, workload.body, 3)
            cpu, wall = [], []
            for _ in range(rounds):
                started_cpu, started_wall = time.process_time(), time.perf_counter()
                await checked_calls(app, workload.body, count)
                cpu.append((time.process_time() - started_cpu) * 1000 / count)
                wall.append((time.perf_counter() - started_wall) * 1000 / count)
            lines.append(
                f"{workload.name:<12} {workload.resources:>6} resources  cpu {min(cpu):8.3f} ms/request"
                f"  (wall best {min(wall):8.3f}; {count} calls x {rounds} rounds)"
            )
            print(lines[-1], flush=True)
    return lines


def _calls(workload: Workload, requests: int) -> int:
    return max(3, requests * 36 // max(workload.resources, 36))  # fewer calls for big bodies


async def _audit_written(app: Asgi) -> None:
    """Until the service's audit writer has written every record queued so far."""
    store = app.state.cds.store
    while store.audit_backlog:
        await asyncio.sleep(0.01)


async def _measure_versus_baseline(
    workloads: list[Workload], *, requests: int, rounds: int, tmp: Path, tune_gc: bool
) -> list[str]:
    """CPU per call of the service and of the baseline, alternating round by round (best round counts).

    Process CPU: a large call computes its facts in a worker thread, and the audit writes run in
    threads too; both are the service's own work. The baseline runs in this thread only, and its
    rounds start once the service's audit records are written. Main-thread CPU alone left a
    10,000-resource call's facts out (92 ms counted of its 119).
    """
    from bench.baseline_app import app as baseline

    lines = []
    own: list[tuple[int, float]] = []
    async with running_app(tmp, max_body=max(len(w.body) for w in workloads), tune_gc=tune_gc) as service:
        for workload in workloads:
            count = _calls(workload, requests)
            best = {"service": float("inf"), "baseline": float("inf")}
            for app in (service, baseline):
                await checked_calls(app, workload.body, 3)
            for _ in range(rounds):
                for name, app in (("baseline", baseline), ("service", service)):
                    await _audit_written(service)  # the service's last writes are not the baseline's to pay
                    started = time.process_time()
                    await checked_calls(app, workload.body, count)
                    best[name] = min(best[name], (time.process_time() - started) * 1000 / count)
            added = best["service"] - best["baseline"]
            own.append((workload.resources, added))
            lines.append(
                f"{workload.name:<12} {workload.resources:>6} resources  service {best['service']:8.3f}"
                f"  baseline {best['baseline']:8.3f}  service's own {added:8.3f} ms/request (process cpu, best of {rounds})"
            )
            print(lines[-1], flush=True)
    from bench.report import sweep_slopes

    if len(own) > 1:
        lines.append("log-log slopes of the service's own cost: " + ", ".join(f"{s:.2f}" for s in sweep_slopes(own)))
        print(lines[-1], flush=True)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="heavy", help="typical, heavy or sweep-N (default heavy)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--html", action="store_true", help="write HTML instead of text")
    parser.add_argument("--flat", action="store_true", help="text: functions by their own time, not the call tree")
    parser.add_argument("--measure", nargs="+", metavar="WORKLOAD", help="print CPU ms per request instead of profiling")
    parser.add_argument("--rounds", type=int, default=5, help="with --measure: rounds, the best counts")
    parser.add_argument(
        "--versus-baseline", action="store_true", help="with --measure: also the parse-only baseline, and what the service adds"
    )
    parser.add_argument("--default-gc", action="store_true", help="keep CPython's GC settings (serve tunes them)")
    parser.add_argument("--out", type=Path, help="default bench/results/profile-<workload>.(txt|html)")
    args = parser.parse_args(argv)
    # The service's warnings with their fields (why a store retry happened), as serve writes them;
    # its INFO lines (one per request) are left out of what is measured here.
    configure_logging("text", "WARNING")
    with tempfile.TemporaryDirectory(prefix="back-knee-profile-") as scratch:
        tmp = Path(scratch)
        if args.measure:
            workloads = [workload_named(name, args.fixtures) for name in args.measure]
            measure = _measure_versus_baseline if args.versus_baseline else _measure
            asyncio.run(measure(workloads, requests=args.requests, rounds=args.rounds, tmp=tmp, tune_gc=not args.default_gc))
            return 0
        workload = workload_named(args.workload, args.fixtures)
        text = asyncio.run(
            _profile(workload, requests=args.requests, tmp=tmp, html=args.html, flat=args.flat, tune_gc=not args.default_gc)
        )
    out = args.out or REPO_ROOT / "bench" / "results" / f"profile-{workload.name}.{'html' if args.html else 'txt'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"profiled {args.requests} x {workload.name} ({workload.description}); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
