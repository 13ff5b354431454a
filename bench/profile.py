"""Profile the service's request path in-process with pyinstrument.

The app runs in this thread (ASGI, lifespan included, SQLite audit in a temp directory) and
receives ``--requests`` calls with one benchmark workload, so the profile shows where a request's
time goes without the load generator or the HTTP server in the picture.

    python -m bench.profile --workload heavy --requests 200
    python -m bench.profile --workload sweep-1000 --requests 20 --html
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.servers import REPO_ROOT
from bench.workloads import SERVICE_ID, Workload, heavy, sweep, typical

__all__ = ["main"]

DEFAULT_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "fhir"


def _workload(name: str, fixtures: Path) -> Workload:
    if name == "typical":
        return typical(fixtures)
    if name == "heavy":
        return heavy(fixtures)
    if name.startswith("sweep-") and name[len("sweep-") :].isdigit():
        return sweep(fixtures, int(name[len("sweep-") :]))
    raise SystemExit(f"error: unknown workload '{name}'; use typical, heavy or sweep-N")


async def _profile(workload: Workload, *, requests: int, tmp: Path, html: bool) -> str:
    from pyinstrument import Profiler

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        auth="off",
        database_url=f"sqlite:///{tmp / 'audit.sqlite3'}",
        patient_key="bench-patient-key-0123456789abcdef",
        log_format="json",
        max_body_bytes=max(5 * 1024 * 1024, len(workload.body) + 1024 * 1024),
    )
    app = create_app(settings)
    path = f"/cds-services/{SERVICE_ID}"
    headers = {"Content-Type": "application/json"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for _ in range(3):  # warm caches and lazy imports outside the profile
                (await client.post(path, content=workload.body, headers=headers)).raise_for_status()
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            profiler.start()
            for _ in range(requests):
                response = await client.post(path, content=workload.body, headers=headers)
                response.raise_for_status()
            profiler.stop()
    return profiler.output_html() if html else profiler.output_text(unicode=True, show_all=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="heavy", help="typical, heavy or sweep-N (default heavy)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--html", action="store_true", help="write HTML instead of text")
    parser.add_argument("--out", type=Path, help="default bench/results/profile-<workload>.(txt|html)")
    args = parser.parse_args(argv)
    workload = _workload(args.workload, args.fixtures)
    out = args.out or REPO_ROOT / "bench" / "results" / f"profile-{workload.name}.{'html' if args.html else 'txt'}"
    with tempfile.TemporaryDirectory(prefix="back-knee-profile-") as scratch:
        tmp = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(CDS_DATABASE_URL=f"sqlite:///{tmp / 'audit.sqlite3'}", CDS_AUTH="off")
        subprocess.run([sys.executable, "-m", "service", "db", "upgrade"], cwd=REPO_ROOT, env=env, capture_output=True, check=False)
        text = asyncio.run(_profile(workload, requests=args.requests, tmp=tmp, html=args.html))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"profiled {args.requests} x {workload.name} ({workload.description}); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
