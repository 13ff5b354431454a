"""``serve`` stopped with SIGTERM (or SIGHUP) while a client's body has stalled: it ends within its
grace period, answers that client 503, flushes what it owes the audit trail, and writes no traceback."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from service.cli import SHUTDOWN_GRACE_SECONDS
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from robustness.served import serve, service_env

RISK = "/cds-services/back-knee-risk-factors"


@contextmanager
def _sighup(disposition: signal.Handlers) -> Iterator[None]:
    """SIGHUP's disposition in this process, which a server started meanwhile inherits (whatever
    this test run was started with: under nohup, SIGHUP comes ignored)."""
    previous = signal.signal(signal.SIGHUP, disposition)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


# SIGHUP: uvicorn handles only INT and TERM; a hangup killed one worker at once, its queued audit
# records with it, and no line said so.
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stalled_upload_does_not_hold_the_shutdown(tmp_path: Path, stop: signal.Signals) -> None:
    database = tmp_path / "audit.sqlite3"
    env = service_env(tmp_path, f"sqlite:///{database}", CDS_MIGRATE_ON_START="true", CDS_LOG_LEVEL="INFO")
    with _sighup(signal.SIG_DFL), serve(env, log_path=tmp_path / "serve.log", ready=True) as served:
        answered = urllib.request.Request(
            f"{served.base_url}{RISK}", data=orjson.dumps(hook_request(prefetch=EMPTY_PREFETCH)),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(answered, timeout=10) as response:
            assert response.status == 200
        with socket.create_connection(("127.0.0.1", served.port)) as stalled:
            stalled.sendall(
                f"POST {RISK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
                + b'{"hook": "patient-view"'
            )
            time.sleep(0.5)
            served.process.send_signal(stop)
            # A generous bound, not a speed claim: before, it waited for the body until a KILL.
            served.process.wait(timeout=SHUTDOWN_GRACE_SECONDS + 30)
            answer = stalled.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"\r\nretry-after: 2\r\n" in answer.lower()
    assert served.process.returncode == -stop  # ended by its signal, after the graceful stop
    lines = served.log_path.read_text().splitlines()
    assert not [line for line in lines if "Traceback" in line or "Exception in ASGI" in line]
    assert any('"Application shutdown complete."' in line for line in lines)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM invocation").fetchone() == (1,)


def test_a_server_started_with_sighup_ignored_outlives_a_hangup(tmp_path: Path) -> None:
    """``nohup back-knee-cds serve &``: meant to outlive its terminal, so SIGHUP stays ignored."""
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'audit.sqlite3'}", CDS_MIGRATE_ON_START="true")
    with _sighup(signal.SIG_IGN), serve(env, log_path=tmp_path / "serve.log") as served:
        served.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        with urllib.request.urlopen(f"{served.base_url}/health/live", timeout=10) as response:
            assert response.status == 200
        assert served.process.poll() is None


def test_a_hangup_of_the_whole_group_restarts_every_worker_gracefully(tmp_path: Path) -> None:
    """A closed terminal signals the supervisor and its workers together. The supervisor restarts
    the workers with SIGTERM; before, the same SIGHUP had already killed them, queued audit and all."""
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'audit.sqlite3'}", CDS_MIGRATE_ON_START="true", CDS_LOG_LEVEL="INFO")
    with _sighup(signal.SIG_DFL), serve(env, log_path=tmp_path / "serve.log", workers=2, ready=True) as served:
        # Both past start-up: one still starting has not yet set SIGHUP aside, and nothing to lose.
        _until_logged(served.log_path, '"Application startup complete."', 2)
        os.killpg(served.process.pid, signal.SIGHUP)
        log = _until_logged(served.log_path, '"Application shutdown complete."', 2)
        assert log.count('"Application shutdown complete."') == 2, log[-3000:]
        with urllib.request.urlopen(f"{served.base_url}/health/live", timeout=30) as response:  # new workers serve
            assert response.status == 200


def _until_logged(log_path: Path, line: str, times: int, timeout_s: float = 60) -> str:
    """The log once ``line`` is in it ``times`` times, or as it is when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while (log := log_path.read_text()).count(line) < times and time.monotonic() < deadline:
        time.sleep(0.2)
    return log
