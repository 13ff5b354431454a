"""Starting and stopping the two HTTP servers under test, and reading the worker's peak memory.

Both run as ``uvicorn`` with one worker in their own process (the service through its own CLI,
``back-knee-cds serve``), on the event loop ``serve`` uses (``service.cli.UVICORN_OPTIONS``).
A command prefix (:func:`placement`) pins them to one CPU, wrk to another, and raises the
priority of all three so other work on a shared machine disturbs less.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.cli import UVICORN_OPTIONS

__all__ = [
    "BASELINE_APPS",
    "Server",
    "ServerError",
    "cpu_seconds",
    "free_port",
    "peak_rss_mb",
    "placement",
    "start_baseline",
    "start_service",
    "wait_live",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """A server did not start, or stopped answering."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, *, timeout_s: float = 15) -> None:
        """SIGTERM (uvicorn's graceful shutdown: the lifespan flushes the audit queue), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def placement(cpus: Sequence[int], *, nice: int) -> list[str]:
    """A command prefix: ``nice`` (negative only as root) and ``taskset`` to ``cpus`` when given."""
    prefix: list[str] = []
    if nice and (nice > 0 or os.geteuid() == 0) and shutil.which("nice"):
        prefix += ["nice", "-n", str(nice)]
    if cpus and shutil.which("taskset"):
        prefix += ["taskset", "--cpu-list", ",".join(map(str, cpus))]
    return prefix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of the whole line
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ServerError(f"/proc/{pid}/status has no VmHWM line")


def start_service(*, env: Mapping[str, str], log_path: Path, prefix: Sequence[str] = ()) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return _start("service", [*prefix, *command], port=port, env=env, log_path=log_path)


# --baseline -> the app in bench/baseline_app.py
BASELINE_APPS = {"fastapi": "bench.baseline_app:serve_fastapi", "starlette": "bench.baseline_app:serve_starlette"}


def start_baseline(*, log_path: Path, prefix: Sequence[str] = (), kind: str = "fastapi") -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", BASELINE_APPS[kind], "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--loop", UVICORN_OPTIONS["loop"], "--no-access-log", "--log-level", "warning",
    ]
    return _start("baseline", [*prefix, *command], port=port, env=os.environ, log_path=log_path)


def _start(name: str, command: list[str], *, port: int, env: Mapping[str, str], log_path: Path) -> Server:
    log = log_path.open("wb")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return Server(name=name, process=process, port=port, log_path=log_path)


def wait_live(server: Server, *, timeout_s: float = 60) -> None:
    """Block until ``GET /health/live`` answers 200, or raise with the server's last log lines."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.name} exited with {server.process.returncode} at start:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url("/health/live"), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise ServerError(f"{server.name} did not answer /health/live within {timeout_s:.0f} s:\n{server.log_tail()}")
