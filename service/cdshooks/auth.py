"""JWT authentication of everything under ``/cds-services`` (interface.md decision 1), as pure ASGI.

A middleware rather than a route dependency, so it also covers paths no route matches (an
unauthenticated caller learns nothing, not even which service ids exist) and runs before any
body is read. ``OPTIONS`` passes untouched: a CORS preflight carries no credentials.

A refused call gets the bare 401 of decision 3 and one log line naming the failed check (never
the token); ``cds_auth_failures_total{check}`` counts it. When the replay check cannot reach the
database the answer is 503 with ``Retry-After``: the token may be fine, so the client should retry,
and accepting it unchecked would open the door to replays.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.cdshooks.errors import RETRY_LATER_HEADERS, error_response, unauthorized_response
from service.cdshooks.jwt_verifier import AuthFailure
from service.cdshooks.paths import CDS_PREFIX, is_cds_path
from service.logs import bind_request_fields
from service.store import StoreUnavailable

__all__ = ["JwtAuthMiddleware", "audiences_for"]

log = logging.getLogger("service.cdshooks.auth")

def audiences_for(base_url: str, path: str) -> tuple[str, ...]:
    """The ``aud`` values a token for ``path`` may carry: the URL called; for feedback also the service URL."""
    audiences = [base_url + path]
    parts = path[len(CDS_PREFIX) :].strip("/").split("/")
    if len(parts) == 2 and parts[1] == "feedback":  # CDS Hooks 2.0 does not spell feedback out; accept both
        audiences.append(f"{base_url}{CDS_PREFIX}/{parts[0]}")
    return tuple(audiences)


class JwtAuthMiddleware:
    """Refuses ``/cds-services`` calls without a valid client JWT when the app has a verifier."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not is_cds_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state.cds
        verifier = state.verifier
        if verifier is None:  # CDS_AUTH=off
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        try:
            authorizations = headers.getlist("authorization")
            if len(authorizations) > 1:
                raise AuthFailure("header", "more than one Authorization header")
            base = state.settings.public_base_url or _request_base(scope, headers)
            client = scope.get("client")
            identity = await verifier.verify(
                authorizations[0] if authorizations else None, audiences=audiences_for(base, path), caller=client[0] if client else ""
            )
        except AuthFailure as failure:
            state.metrics.auth_failures.labels(check=failure.check).inc()
            log.warning(
                "request refused (401): client JWT check failed",
                extra={"fields": {"check": failure.check, "reason": failure.reason, "iss": failure.issuer, "method": scope["method"], "path": path}},
            )
            await unauthorized_response()(scope, receive, send)
            return
        except StoreUnavailable as exc:
            log.error(
                "request refused (503): the jti replay check cannot be made",
                extra={"fields": {"reason": str(exc), "path": path}},
            )
            response = error_response(
                503, "the service cannot check this token for replay right now (database unavailable); retry shortly", RETRY_LATER_HEADERS
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["cds_client"] = identity
        bind_request_fields(client=identity.iss, **({"tenant": identity.tenant} if identity.tenant else {}))
        await self.app(scope, receive, send)


def _request_base(scope: Scope, headers: Headers) -> str:
    """interface.md decision 11: without CDS_PUBLIC_BASE_URL, the request's scheme and Host header."""
    host = headers.get("host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scope.get('scheme', 'http')}://{host}"
