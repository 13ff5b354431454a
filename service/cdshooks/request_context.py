"""One log line per HTTP request, written once it is answered, and a fresh ``request_id`` bound to
every line written while it is handled and sent back in ``X-Request-ID``.

The line replaces uvicorn's access line (``serve`` turns that off) and the route's own summary: one
record, one formatting and one write per request instead of two. A hook call that reached its
answer binds ``patient`` and ``cards`` (see ``routes.call_service``) and its line is the
``hook answered`` event; every other request, errors included, is ``request answered``.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from service.cdshooks.status_watch import StatusWatch
from service.logs import request_log_context

__all__ = ["HOOK_ANSWERED", "REQUEST_ANSWERED", "RequestLogContextMiddleware"]

log = logging.getLogger("service.access")

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
                # A request the app cannot answer is answered inside (unanswered.py).
                await self.app(scope, receive, watch.send)
            finally:
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        HOOK_ANSWERED if "cards" in bound else REQUEST_ANSWERED,
                        extra={"fields": _request_line_fields(scope, watch.status, time.perf_counter() - started)},
                    )


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
