"""Real HTTP servers for tests: an ASGI app run by uvicorn on 127.0.0.1, port 0, in a daemon thread.

Why: the loopback FHIR server and the loopback JWKS host are real servers (connections,
timeouts, redirects over real sockets), not mocks; both start, report their port and stop the
same way, and both are started once per test session and cleared around every test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import uvicorn
from starlette.types import ASGIApp

__all__ = ["Resettable", "serve_on_loopback", "reset_around_test"]

START_SECONDS = 10.0


@contextmanager
def serve_on_loopback(app: ASGIApp, *, name: str, **options: Any) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the block ends; yields the port.

    ``name`` names the thread and the error when the server does not start; ``options`` are
    further ``uvicorn.Config`` settings (e.g. ``http="h11"``).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,  # leave the test process's logging configuration alone
        log_level="warning",
        timeout_graceful_shutdown=1,
        **options,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not runner.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the loopback server {name!r} did not start within {START_SECONDS:g} s")
        time.sleep(0.01)
    try:
        yield runner.servers[0].sockets[0].getsockname()[1]
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


class Resettable(Protocol):
    def reset(self) -> None: ...


ServerT = TypeVar("ServerT", bound=Resettable)


def reset_around_test(server: ServerT) -> Iterator[ServerT]:
    """A session server for one test: ``yield from`` it in a fixture.

    Reset before (no switches left by an earlier test) and after (this test's records gone).
    """
    server.reset()
    yield server
    server.reset()
