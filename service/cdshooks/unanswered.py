"""A request the app could not answer still gets a JSON answer, from inside CORS (so a browser can
read it) and inside the request log context (so it carries ``X-Request-ID`` and its log lines the
request id):

- 503 when the server's graceful shutdown cancelled it (``cli.SHUTDOWN_GRACE_SECONDS`` ran out,
  e.g. waiting for a body that stalled), instead of uvicorn's "Exception in ASGI application";
- 500 when the service failed on it, instead of Starlette's text/plain answer from outside every
  middleware; its traceback goes on a ``request failed`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.cdshooks.errors import RETRY_AFTER_SECONDS
from service.cdshooks.status_watch import StatusWatch
from service.logs import bind_request_fields

__all__ = ["UnansweredRequestMiddleware"]

failures = logging.getLogger("service.failures")

FAILED = "the service failed on this request; the X-Request-ID header names it in the logs"
SHUTTING_DOWN = "the service is shutting down; retry"
# This connection ends with the answer; a retry (after a moment) reaches a process that is serving.
_SHUTTING_DOWN_HEADERS = ((b"connection", b"close"), (b"retry-after", str(RETRY_AFTER_SECONDS).encode()))


class UnansweredRequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch.send)
        except asyncio.CancelledError:
            # Only the server cancels a request (its graceful shutdown): answer if nothing was sent
            # yet, and end here.
            if not watch.started:
                with contextlib.suppress(Exception):  # the client may be gone too
                    await _answer(watch.send, 503, SHUTTING_DOWN, _SHUTTING_DOWN_HEADERS)
        except Exception:
            if watch.started:
                raise  # mid-answer: nothing else can be sent
            failures.exception("request failed")
            with contextlib.suppress(Exception):
                await _answer(watch.send, 500, FAILED)


async def _answer(send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    bind_request_fields(error=message)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": orjson.dumps({"error": message})})
