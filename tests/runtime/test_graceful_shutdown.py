"""``serve`` stopped with SIGTERM while a client's body has stalled: it ends within its grace period,
answers that client 503, flushes what it owes the audit trail, and writes no traceback."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from service.cli import SHUTDOWN_GRACE_SECONDS
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import REPO_ROOT

RISK = "/cds-services/back-knee-risk-factors"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited at start"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def test_a_stalled_upload_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    database = tmp_path / "audit.sqlite3"
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_AUTH": "off",
        "CDS_DATABASE_URL": f"sqlite:///{database}",
        "CDS_MIGRATE_ON_START": "true",
        "CDS_PATIENT_KEY": "shutdown-test-patient-key-0123456789",
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    try:
        _wait_ready(port, process)
        answered = urllib.request.Request(
            f"http://127.0.0.1:{port}{RISK}", data=orjson.dumps(hook_request(prefetch=EMPTY_PREFETCH)),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(answered, timeout=10) as response:
            assert response.status == 200
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(
            f"POST {RISK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"hook": "patient-view"'
        )
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        # A generous bound, not a speed claim: before, it waited for the body until a KILL.
        process.wait(timeout=SHUTDOWN_GRACE_SECONDS + 30)
        answer = stalled.recv(4096)
        stalled.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert answer.startswith(b"HTTP/1.1 503")
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert not [line for line in lines if "Traceback" in line or "Exception in ASGI" in line]
    assert any('"Application shutdown complete."' in line for line in lines)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM invocation").fetchone() == (1,)
