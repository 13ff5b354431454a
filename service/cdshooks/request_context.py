"""Binds a fresh ``request_id`` to every log line written while one HTTP request is handled."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.logs import request_log_context

__all__ = ["RequestLogContextMiddleware"]


class RequestLogContextMiddleware:
    """Outside authentication, so a refused call's log line carries its request id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_log_context():
            await self.app(scope, receive, send)
