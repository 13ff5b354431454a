"""``make fuzz``: schemathesis, every check, against a real loopback server built from this checkout.

The server runs with authentication off and a fresh SQLite database in a temporary directory;
schemathesis reads the server's own ``/openapi.json``, runs its phases (examples, coverage,
fuzzing, stateful) with the fixed seed and sizes in ``robustness/schemathesis.toml``, and
fails on any server error, undocumented status, content type or body. Afterwards the server's
log must hold no traceback. Bounded: schemathesis is stopped after ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from robustness.served import VENV_BIN, serve, service_env, upgrade_database

__all__ = ["main", "summarise"]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = VENV_BIN / "st"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="hard limit in seconds for the schemathesis run")
    parser.add_argument("--report-dir", type=Path, help="keep the JUnit and NDJSON reports here")
    parser.add_argument("extra", nargs="*", help="further arguments for `st run` (e.g. --max-examples 20)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cds-fuzz-") as tmp:
        workdir = Path(tmp)
        env = service_env(workdir, f"sqlite:///{workdir / 'fuzz.sqlite3'}")
        upgrade_database(env)
        with serve(env, log_path=workdir / "server.log") as served:
            report_dir = (args.report_dir or workdir / "report").resolve()
            report_dir.mkdir(parents=True, exist_ok=True)
            command = [
                str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{served.base_url}/openapi.json",
                "--checks", "all", "--report", "junit,ndjson", "--report-dir", str(report_dir), *args.extra,
            ]
            print("$", " ".join(command), flush=True)
            try:
                # cwd: schemathesis keeps per-project state in ./.schemathesis; keep it out of the checkout.
                status = subprocess.run(command, cwd=workdir, timeout=args.budget, check=False).returncode
            except subprocess.TimeoutExpired:
                print(f"fuzz: schemathesis did not finish within {args.budget:.0f} s", file=sys.stderr)
                status = 1
            errors = served.server_errors()
        for ndjson in sorted(report_dir.glob("*.ndjson")):
            print(summarise(ndjson))
        if errors:
            print(f"fuzz: the server logged {len(errors)} error line(s):", file=sys.stderr)
            for line in errors[:20]:
                print("  " + line, file=sys.stderr)
            return 1
    return status


def summarise(ndjson: Path) -> str:
    """Requests sent per operation, generation mode and response status, from the NDJSON report."""
    counts: Counter[tuple[str, str, str]] = Counter()
    with ndjson.open(encoding="utf-8") as events:
        for line in events:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            for case_id, interaction in (recorder.get("interactions") or {}).items():
                case = recorder["cases"][case_id]["value"]
                mode = ((case.get("meta") or {}).get("generation") or {}).get("mode", "-")
                status = (interaction.get("response") or {}).get("status_code", "no response")
                operation = f"{case['method']} {case['path']}" if status != 405 else "(undocumented methods)"
                counts[(operation, mode, str(status))] += 1
    lines = [f"fuzz: {sum(counts.values())} requests (operation, mode, status: count)"]
    lines += [f"  {operation:45} {mode:9} {status:>11}: {count}" for (operation, mode, status), count in sorted(counts.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
