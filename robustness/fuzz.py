"""``make fuzz``: schemathesis, every check, against a real loopback server built from this checkout.

The server runs as deployed, with client JWTs required (``CDS_AUTH=jwt``, one test client whose
key is made here; robustness/fuzz_auth.py signs a token for each request), and a fresh SQLite
database in a temporary directory. schemathesis reads the server's own ``/openapi.json``, runs its phases (examples, coverage,
fuzzing, stateful) with the fixed seed and sizes in ``robustness/schemathesis.toml``, and
fails on any server error, undocumented status, content type or body. Afterwards the server's
log must hold no traceback. Bounded: schemathesis is stopped after ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from robustness.fuzz_auth import ALGORITHM, BASE_URL_VARIABLE, ISSUER_VARIABLE, KEY_FILE_VARIABLE
from robustness.served import REPO_ROOT, VENV_BIN, serve, service_env, upgrade_database
from scripts import make_test_jwt

__all__ = ["main", "summarise"]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = VENV_BIN / "st"
FUZZ_ISSUER = "https://fuzz-ehr.test"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="hard limit in seconds for the schemathesis run")
    parser.add_argument("--report-dir", type=Path, help="keep the JUnit and NDJSON reports here")
    parser.add_argument("extra", nargs="*", help="further arguments for `st run` (e.g. --max-examples 20)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cds-fuzz-") as tmp:
        workdir = Path(tmp)
        key_file, clients_file = _test_client(workdir)
        env = service_env(workdir, f"sqlite:///{workdir / 'fuzz.sqlite3'}", CDS_AUTH="jwt", CDS_TRUSTED_CLIENTS_FILE=str(clients_file))
        upgrade_database(env)
        with serve(env, log_path=workdir / "server.log") as served:
            hooks_env = {
                **os.environ,
                "SCHEMATHESIS_HOOKS": "robustness.fuzz_auth",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                KEY_FILE_VARIABLE: str(key_file),
                ISSUER_VARIABLE: FUZZ_ISSUER,
                BASE_URL_VARIABLE: served.base_url,
            }
            report_dir = (args.report_dir or workdir / "report").resolve()
            report_dir.mkdir(parents=True, exist_ok=True)
            command = [
                str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{served.base_url}/openapi.json",
                "--checks", "all", "--report", "junit,ndjson", "--report-dir", str(report_dir), *args.extra,
            ]
            print("$", " ".join(command), flush=True)
            try:
                # cwd: schemathesis keeps per-project state in ./.schemathesis; keep it out of the checkout.
                status = subprocess.run(command, cwd=workdir, env=hooks_env, timeout=args.budget, check=False).returncode
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


def _test_client(workdir: Path) -> tuple[Path, Path]:
    """The fuzz client's private key file and a trusted clients file naming it, made as the README shows."""
    out = workdir / "fuzz-client"
    with contextlib.redirect_stdout(io.StringIO()):  # keygen says where it wrote; the run's output is schemathesis'
        make_test_jwt.main(["keygen", "--alg", ALGORITHM, "--out", str(out), "--iss", FUZZ_ISSUER])
    return out.with_suffix(".pem"), out.with_suffix(".trusted-clients.yaml")


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
