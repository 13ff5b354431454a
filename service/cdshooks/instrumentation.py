"""Request count and latency per CDS service and status, for every answer including errors."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from service.cdshooks.paths import CDS_PREFIX, is_cds_path
from service.cdshooks.status_watch import StatusWatch

__all__ = ["RequestMetricsMiddleware"]


class RequestMetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not is_cds_path(path) or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch.send)
        finally:
            state = getattr(scope.get("app").state, "cds", None) if scope.get("app") else None
            if state is not None:
                state.metrics.record_request(_service_label(path, state.catalogue.services), watch.status, time.perf_counter() - started)


def _service_label(path: str, known: object) -> str:
    """``discovery``, a known service id (``id`` or ``id/feedback``), or ``unknown`` (bounded labels)."""
    rest = path[len(CDS_PREFIX) :].strip("/")
    if not rest:
        return "discovery"
    service_id, _, tail = rest.partition("/")
    if service_id not in known:  # type: ignore[operator]
        return "unknown"
    return f"{service_id}/feedback" if tail == "feedback" else service_id
