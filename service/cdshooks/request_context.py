"""One log line per HTTP request, written once it is answered, and a fresh ``request_id`` bound to
every line written while it is handled and sent back in ``X-Request-ID``.

The line replaces uvicorn's access line (``serve`` turns that off) and the route's own summary: one
record, one formatting and one write per request instead of two. A hook call that reached its
answer binds ``patient`` and ``cards`` (see ``routes.call_service``) and its line is the
``hook answered`` event; every other request, errors included, is ``request answered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from service.cdshooks.status_watch import StatusWatch
from service.logs import request_log_context

__all__ = ["HOOK_ANSWERED", "REQUEST_ANSWERED", "RequestLogContextMiddleware"]

log = logging.getLogger("service.access")
failures = logging.getLogger("service.failures")  # the traceback of a request answered 500

HOOK_ANSWERED = "hook answered"
REQUEST_ANSWERED = "request answered"


class RequestLogContextMiddleware:
    """Outside authentication, so a refused call's lines carry its request id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        with request_log_context() as bound:
            # The id in the answer too: what a client quotes to find its call's lines.
            watch = StatusWatch(send, [(b"x-request-id", str(bound["request_id"]).encode("ascii"))])
            try:
                await self.app(scope, receive, watch.send)
            except asyncio.CancelledError:
                # Only the server cancels a request: its graceful shutdown ran out of time
                # (cli.SHUTDOWN_GRACE_SECONDS), e.g. waiting for a body that stalled. Answer 503 if
                # nothing was sent yet and end here, instead of uvicorn's "Exception in ASGI application".
                if not watch.started:
                    with contextlib.suppress(Exception):  # the client may be gone too
                        await _shutting_down(watch.send)
            except Exception:
                if watch.started:
                    raise  # mid-answer: nothing else can be sent
                # Answered here, not by Starlette's outermost handler, so that the 500 carries the
                # request id for the client to quote; the traceback goes to this request's log line.
                failures.exception("request failed")
                with contextlib.suppress(Exception):
                    await _failed(watch.send)
            finally:
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        HOOK_ANSWERED if "cards" in bound else REQUEST_ANSWERED,
                        extra={"fields": _request_line_fields(scope, watch.status, time.perf_counter() - started)},
                    )


async def _failed(send: Send) -> None:
    body = b'{"error": "the service failed on this request; the X-Request-ID header names it in the logs"}'
    await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _shutting_down(send: Send) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b'{"error": "the service is shutting down; retry"}'})


def _request_line_fields(scope: Scope, status: int, seconds: float) -> dict[str, object]:
    """What uvicorn's access line said (client address, method, path with query, HTTP version, status) and the duration."""
    path = quote(scope["path"])
    query = scope.get("query_string")
    if query:
        path = f"{path}?{query.decode('ascii')}"
    client = scope.get("client")
    return {
        "method": scope["method"],
        "path": path,
        "status": status,
        "ms": round(seconds * 1000, 2),
        "client_addr": f"{client[0]}:{client[1]}" if client else "",
        "http_version": scope.get("http_version", "1.1"),
    }
