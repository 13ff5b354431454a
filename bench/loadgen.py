"""Driving wrk: one run at one concurrency, its output read back as numbers.

wrk (Debian package ``wrk``) is the load generator for both the service and the baseline, so the
two are measured by the same client. The Lua script (``post.lua``) prints one ``BENCH_RESULT``
JSON line; this module runs wrk and turns that line into a :class:`LoadResult`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.tools import ensure_tool

__all__ = ["LoadResult", "WrkError", "ensure_wrk", "parse_wrk_output", "run_wrk"]

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
_MARKER = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    duration_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    # CPU seconds the server process used during the run (user + system), when measured: per
    # request, it is the cost that other work on a shared machine does not inflate.
    server_cpu_s: float | None = None

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or self.requests == 0:
            return None
        return self.server_cpu_s * 1000 / self.requests

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def parse_wrk_output(text: str) -> LoadResult:
    """The :class:`LoadResult` in wrk's output (the line ``post.lua`` prints)."""
    for line in text.splitlines():
        if line.startswith(_MARKER):
            data = orjson.loads(line[len(_MARKER) :])
            return LoadResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                mean_ms=data["mean_us"] / 1000,
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                errors={name: int(count) for name, count in data["errors"].items()},
            )
    raise WrkError(f"wrk printed no {_MARKER.strip()} line; its output was:\n{text.strip()}")


def run_wrk(
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    duration_s: int,
    timeout_s: int = 60,
    prefix: Sequence[str] = (),
) -> LoadResult:
    """Load ``url`` with ``concurrency`` connections for ``duration_s`` seconds (one wrk thread)."""
    command = [
        "wrk", "--threads", "1", "--connections", str(concurrency), "--duration", f"{duration_s}s",
        "--timeout", f"{timeout_s}s", "--script", str(LUA_SCRIPT), url,
    ]
    command = [*prefix, *command]  # e.g. taskset/nice from bench.servers.placement
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
    )
    if completed.returncode != 0:
        raise WrkError(f"wrk exited with {completed.returncode}: {completed.stderr.strip() or completed.stdout.strip()}")
    return parse_wrk_output(completed.stdout)


def ensure_wrk(*, install: bool) -> str:
    """The path of wrk; installs the Debian package when allowed and running as root."""
    found = ensure_tool("wrk", package="wrk", install=install)
    if found:
        return found
    raise WrkError("wrk is not installed: run `apt-get install wrk` (Debian/Ubuntu) and retry")
