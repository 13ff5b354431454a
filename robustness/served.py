"""A real ``back-knee-cds serve`` on loopback, for the fuzz and soak runs.

Runs the installed console script in a child process (the same way an operator starts it),
with ``CDS_AUTH=off`` unless the caller says otherwise, and a database of the caller's choosing, and stops it again. The server's
output goes to a file, which :meth:`Served.server_errors` scans for tracebacks afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

__all__ = ["Served", "serve", "free_port", "service_env", "upgrade_database", "REPO_ROOT", "VENV_BIN"]

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# `python -m service` from the checkout: the code under test, whatever the venv's install points at.
CLI = [sys.executable, "-m", "service"]
_START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Served:
    base_url: str
    log_path: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.base_url.rpartition(":")[2])

    def server_errors(self) -> list[str]:
        """Log lines at level error or above, and tracebacks (a robust run has none)."""
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            if isinstance(entry, dict):
                if str(entry.get("level", "")).lower() in ("error", "critical") or "Traceback" in line:
                    found.append(line)
            elif "Traceback (most recent call last)" in line or "Exception in ASGI application" in line:
                found.append(line)
        return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def service_env(workdir: Path, database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a development server whose state all lives under ``workdir``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDS_")}
    env.update(
        {
            "CDS_AUTH": "off",
            "CDS_DATABASE_URL": database_url,
            "CDS_PATIENT_KEY_FILE": str(workdir / "patient-key"),
            "CDS_LOG_FORMAT": "json",
            "CDS_LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


def upgrade_database(env: Mapping[str, str]) -> None:
    """``back-knee-cds db upgrade``: the schema a fresh deployment gets."""
    result = subprocess.run([*CLI, "db", "upgrade"], cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"back-knee-cds db upgrade failed ({result.returncode}): {result.stderr.strip()}")


@contextmanager
def serve(env: Mapping[str, str], *, log_path: Path, workers: int = 1, ready: bool = False) -> Iterator[Served]:
    """Start the server, wait until ``/health/live`` answers (``/health/ready`` with ``ready``), and
    stop it: SIGINT, then SIGKILL. A graceful stop first, so that under ``--workers N`` the workers
    stop with it and ``serve`` removes what it made."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a test may signal it as a terminal would
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_answering(f"{base_url}/health/{'ready' if ready else 'live'}", process)
            yield Served(base_url=base_url, log_path=log_path, env=env, process=process)
        finally:
            _stop(process)


def _wait_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"back-knee-cds serve exited with {process.returncode} before answering")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"back-knee-cds serve did not answer {url} within {_START_TIMEOUT_SECONDS:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
