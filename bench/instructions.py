"""Instructions per call, counted by valgrind's cachegrind: the same number on every run.

Timings on a shared 2-CPU machine move by 10-30 % from one run to the next, so a change worth
1-3 % of a call cannot be told from noise in them. The instructions a call executes do not
depend on what else the machine does: with a fixed hash seed they repeat to within 0.3 %.
They are not time: C that streams bytes (orjson's parse, the nesting check) runs several
instructions a cycle, Python chasing pointers through a parsed body far fewer. Compare a
change with the same code before it, not one part's count with another's.

    python -m bench.instructions typical                      # the service, per call
    python -m bench.instructions typical heavy --versus-baseline

The app runs in-process as ``bench.profile`` runs it (lifespan, SQLite audit, GC tuned),
under ``valgrind --tool=cachegrind``, twice: warm-up then N1 calls, and warm-up then N2 calls.
The difference of the two totals over N2 - N1 is one call's cost; start-up cancels out. The
audit writer's thread is counted too, at the small batches valgrind's slowness leaves it
(about 50 times slower than native: one or two records a batch, not tens).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.profile import checked_calls, running_app, workload_named
from bench.servers import REPO_ROOT
from bench.tools import ensure_tool
from bench.workloads import DEFAULT_FIXTURES
from service.logs import configure_logging

__all__ = ["instructions_in", "main"]

APPS = ("service", "baseline")
WARM_UP_CALLS = 20
# cachegrind's summary on stderr: "==1234== I   refs:      5,019,028,112"
_TOTAL = re.compile(r"^==\d+== I\s+refs:\s+([\d,]+)\s*$", re.MULTILINE)


def instructions_in(valgrind_stderr: str) -> int:
    """The total instruction count in cachegrind's summary."""
    found = _TOTAL.search(valgrind_stderr)
    if found is None:
        raise ValueError("no 'I refs' line in valgrind's output")
    return int(found.group(1).replace(",", ""))


def _count(valgrind: str, app: str, workload: str, calls: int, fixtures: Path) -> int:
    """Instructions of a whole run: start-up, warm-up and ``calls`` calls of ``app``."""
    command = [
        valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, "-m", "bench.instructions", "--run", app, "--run-calls", str(calls), "--fixtures", str(fixtures), workload,
    ]  # fmt: skip
    # A fixed seed: str hashes, and so dict and set layouts, are the same in both runs.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"error: the counted run failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return instructions_in(completed.stderr)


def _per_call(valgrind: str, app: str, workload: str, calls: tuple[int, int], fixtures: Path) -> float:
    fewer, more = calls
    added = _count(valgrind, app, workload, more, fixtures) - _count(valgrind, app, workload, fewer, fixtures)
    if added <= 0:  # more calls cannot cost fewer instructions: the counted runs did not do what they say
        raise SystemExit(f"error: {more} calls of the {app} counted {added} instructions more than {fewer}")
    return added / (more - fewer)


async def _run_calls(app_name: str, workload_name: str, calls: int, fixtures: Path) -> None:
    """What valgrind runs: the warm-up, then ``calls`` calls, in this process."""
    workload = workload_named(workload_name, fixtures)
    if app_name == "baseline":
        from bench.baseline_app import app as baseline

        await checked_calls(baseline, workload.body, WARM_UP_CALLS + calls)
        return
    with tempfile.TemporaryDirectory(prefix="back-knee-instructions-") as scratch:
        async with running_app(Path(scratch), max_body=len(workload.body), tune_gc=True) as service:
            await checked_calls(service, workload.body, WARM_UP_CALLS + calls)


def _calls(text: str) -> tuple[int, int]:
    fewer, _, more = text.partition(",")
    if not (fewer.isdigit() and more.isdigit() and int(more) > int(fewer)):
        raise argparse.ArgumentTypeError("expected two counts, the second larger: 30,130")
    return int(fewer), int(more)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="+", metavar="WORKLOAD", help="typical, heavy or sweep-N")
    parser.add_argument("--calls", type=_calls, default=(30, 130), help="N1,N2: calls in the two counted runs (default 30,130)")
    parser.add_argument("--versus-baseline", action="store_true", help="also the parse-only baseline, and the ratio")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--no-install", action="store_true", help="never apt-get install valgrind")
    parser.add_argument("--run", choices=APPS, help=argparse.SUPPRESS)  # the counted run itself: which app ...
    parser.add_argument("--run-calls", type=int, default=0, help=argparse.SUPPRESS)  # ... and how many calls
    args = parser.parse_args(argv)
    configure_logging("text", "WARNING")
    if args.run:
        (workload,) = args.workloads
        asyncio.run(_run_calls(args.run, workload, args.run_calls, args.fixtures))
        return 0
    for name in args.workloads:  # a wrong name is told now, not after a valgrind run
        workload_named(name, args.fixtures)
    valgrind = ensure_tool("valgrind", package="valgrind", install=not args.no_install)
    if valgrind is None:
        raise SystemExit("error: valgrind is not installed: run `apt-get install valgrind` (Debian/Ubuntu) and retry")
    for workload in args.workloads:
        service = _per_call(valgrind, "service", workload, args.calls, args.fixtures)
        line = f"{workload:<12} service {service / 1e6:8.3f} M instructions/call"
        if args.versus_baseline:
            baseline = _per_call(valgrind, "baseline", workload, args.calls, args.fixtures)
            line += f"  baseline {baseline / 1e6:8.3f} M  ratio {baseline / service:.3f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
