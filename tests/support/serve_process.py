"""``back-knee-cds serve`` as a real process on 127.0.0.1: what only a served process shows
(signals, shutdown, several workers), with auth off and a SQLite audit database in ``tmp_path``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

__all__ = ["Served", "serve_process", "wait_ready"]

READY_SECONDS = 30


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen[bytes]
    port: int
    database: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_process(tmp_path: Path, *serve_args: str) -> Iterator[Served]:
    """Start ``serve --port P SERVE_ARGS``, wait until it is ready, yield it; kill it if still running at the end."""
    port = _free_port()
    database = tmp_path / "audit.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_AUTH": "off",
        "CDS_DATABASE_URL": f"sqlite:///{database}",
        "CDS_MIGRATE_ON_START": "true",
        "CDS_PATIENT_KEY": "served-test-patient-key-0123456789",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), *serve_args],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            served = Served(process, port, database, log_path)
            wait_ready(served)
            yield served
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_ready(served: Served) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert served.process.poll() is None, f"serve exited: {served.log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{served.url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
