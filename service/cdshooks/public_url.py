"""The base URL the service's own links start with: card links and the rule catalogue's URLs.

CDS_PUBLIC_BASE_URL when set (interface.md decision 11), else the request's scheme and Host. A
Host header that cannot be the authority of a URL (spaces, a path, a query, empty) is refused
with a 400: a link built from it would not be a valid absolute URL (CDS Hooks wants one).
"""

from __future__ import annotations

import re

from starlette.requests import Request

from service.cdshooks.errors import HookRequestError
from service.state import AppState

__all__ = ["public_base_url"]

# RFC 3986 authority without userinfo: a bracketed IPv6 address, or a name or IPv4 address made of
# unreserved characters (punycode for international names), then an optional port.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::[0-9]{1,5})?")


def public_base_url(state: AppState, request: Request) -> str:
    """``https://cds.example.org`` (no trailing slash): where this service's links point."""
    if state.settings.public_base_url:
        return state.settings.public_base_url
    host = request.headers.get("host")
    if host is None:
        host = request.url.netloc
    elif not _HOST.fullmatch(host):
        raise HookRequestError(
            f"the Host header {host[:100]!r} is not a host name or address with an optional port; "
            "the service's links are built from it (or set CDS_PUBLIC_BASE_URL)"
        )
    # The scope's scheme, as request.url would give it, without building and parsing the whole URL (~4 us).
    return f"{request.scope.get('scheme', 'http')}://{host}"
