"""CORS for browser-based CDS clients (the CDS Hooks sandbox, SMART web EHRs): ``CDS_CORS_ORIGINS``.

interface.md decision 12: a preflight needs no JWT and answers for discovery, every service and
feedback (methods GET and POST; headers ``authorization`` and ``content-type``); every actual
response to an allowed origin carries ``Access-Control-Allow-Origin``, errors included (a 401
the browser hides is a 401 nobody can debug). So this middleware sits outside authentication
and the error handlers. A disallowed origin never gets the header; its preflight is refused with
a JSON 403 saying why. ``*`` is accepted only with ``CDS_AUTH=off`` (settings enforce it).

Own code rather than Starlette's ``CORSMiddleware``: that one answers a refused preflight with
a plain-text 400, and the contract here is a JSON ``{"error": ...}`` for every refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.cdshooks.errors import error_response
from service.config_error import ConfigError

__all__ = ["CorsMiddleware", "parse_origins", "ALLOWED_METHODS", "ALLOWED_HEADERS"]

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("authorization", "content-type")
# CORS-safelisted request headers a browser may list in a preflight anyway.
_SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language"})
_PREFLIGHT_MAX_AGE = "600"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def parse_origins(entries: Iterable[str]) -> frozenset[str]:
    """``CDS_CORS_ORIGINS`` normalised as browsers send ``Origin`` (lower case, no trailing slash, no
    default port); an entry that is not an origin stops the start."""
    origins = set()
    for entry in entries:
        if entry == "*":
            origins.add(entry)
            continue
        origin = entry.strip().rstrip("/").lower()
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or "@" in parts.netloc:
            raise ConfigError(
                f"CDS_CORS_ORIGINS: {entry!r} is not an origin; write scheme://host[:port] without a path, "
                "e.g. https://sandbox.cds-hooks.org"
            )
        if parts.port == _DEFAULT_PORTS[parts.scheme]:  # a browser never sends https://x:443
            origin = f"{parts.scheme}://{parts.netloc.removesuffix(f':{parts.port}')}"
        origins.add(origin)
    return frozenset(origins)


class CorsMiddleware:
    """Preflights answered here; actual responses get ``Access-Control-Allow-Origin`` for allowed origins."""

    def __init__(self, app: ASGIApp, *, origins: frozenset[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = origins - {"*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers)(scope, receive, send)
            return
        allow = self._allow_origin_value(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                if allow is not None:
                    response_headers["Access-Control-Allow-Origin"] = allow
                    # Else a browser client cannot read the id it would quote (request_context.py).
                    response_headers["Access-Control-Expose-Headers"] = "X-Request-ID"
                if not self.any_origin:
                    response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allow_origin_value(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if self.any_origin:
            return "*"
        return origin if origin.lower() in self.origins else None

    def _preflight(self, origin: str, headers: Headers) -> Response:
        allow = self._allow_origin_value(origin)
        method = headers["access-control-request-method"].strip().upper()
        requested = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()]
        refused_headers = [h for h in requested if h not in ALLOWED_HEADERS and h not in _SAFELISTED_HEADERS]
        if allow is None:
            problem = f"origin {origin[:200]!r} is not in CDS_CORS_ORIGINS"
        elif method not in ALLOWED_METHODS:
            problem = f"method {method[:20]!r} is not allowed (GET, POST)"
        elif refused_headers:
            problem = f"header {refused_headers[0][:60]!r} is not allowed (authorization, content-type)"
        else:
            problem = None
        if problem is not None:
            response = error_response(403, f"CORS preflight refused: {problem}")
            response.headers["Vary"] = _PREFLIGHT_VARY
            return response
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": allow,
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
                "Vary": _PREFLIGHT_VARY,
            },
        )
