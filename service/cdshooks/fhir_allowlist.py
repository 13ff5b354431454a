"""Which FHIR servers the service may call: ``CDS_FHIR_SERVER_ALLOWLIST``, matched on parsed URLs.

A request's ``fhirServer`` is client input, and the service sends it a bearer token and
patient queries: an open match would turn the service into a proxy into the hospital network
(SSRF) or hand the token to a look-alike host. So URLs are parsed and normalised, then compared
part by part (scheme, host, port, whole path segments), never as string prefixes that
``https://ehr.example.org.evil.com`` or ``https://ehr.example.org@evil.com`` could satisfy.
Anything unusual (user info, backslashes, dot segments (``..;`` too), whitespace, a query on a base URL,
non-ASCII hosts) is refused rather than interpreted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from service.config_error import ConfigError

__all__ = ["LOOPBACK_HOSTS", "ServerAllowlist", "ServerUrl", "UrlRefused", "parse_server_url"]

# http is allowed only for these hosts (interface.md decision 2 applies the same rule to jku URLs).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f\\]")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


class UrlRefused(ValueError):
    """A URL the service will not call; ``str()`` says why, without echoing secrets."""


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """A normalised http(s) URL: lower-case scheme and host, explicit port, decoded path segments."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]
    query: str = ""

    @property
    def base(self) -> str:
        """The URL without query, rebuilt from the normalised parts (what was checked is what is called)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        path = "".join("/" + quote(segment, safe="!$&'()*+,;=:@-._~") for segment in self.segments)
        return f"{self.scheme}://{host}{port}{path}"

    @property
    def url(self) -> str:
        return f"{self.base}?{self.query}" if self.query else self.base

    def contains(self, other: ServerUrl) -> bool:
        """``other`` is on the same origin and at or under this URL's path (whole segments only)."""
        return (
            self.scheme == other.scheme
            and self.host == other.host
            and self.port == other.port
            and other.segments[: len(self.segments)] == self.segments
        )

    def join(self, relative: str) -> ServerUrl:
        """``{base}/{relative}`` for a relative FHIR read or search (a prefetch template); stays under base."""
        if not relative or relative.startswith("/") or _FORBIDDEN.search(relative) or "#" in relative:
            raise UrlRefused("a FHIR query must be a relative URL such as 'Condition?patient=123'")
        path, _, query = relative.partition("?")
        if ":" in path.split("/", 1)[0]:
            raise UrlRefused("a FHIR query must be relative, not an absolute URL")
        extra = _segments(path, what="the FHIR query")
        return ServerUrl(self.scheme, self.host, self.port, self.segments + extra, query)


def parse_server_url(text: str, *, allow_query: bool = False) -> ServerUrl:
    """Parse and normalise an absolute http(s) URL, or raise :class:`UrlRefused` saying why.

    https is required except for loopback hosts (127.0.0.1, ::1, localhost).
    """
    if not isinstance(text, str) or not text:
        raise UrlRefused("the URL is empty")
    if _FORBIDDEN.search(text):
        raise UrlRefused("the URL contains whitespace, control characters or backslashes")
    if not text.isascii():
        raise UrlRefused("the URL contains non-ASCII characters (use the punycode host name)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"the URL cannot be parsed ({exc})") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise UrlRefused("the URL must start with https:// (or http:// for a loopback host)")
    if "@" in parts.netloc:
        raise UrlRefused("the URL must not carry user info (user:password@)")
    if parts.fragment or (parts.query and not allow_query):
        raise UrlRefused("a FHIR base URL must not carry a query or fragment")
    host = _normalise_host(parts.hostname or "")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise UrlRefused("the URL must use https (http is allowed only for 127.0.0.1, ::1 and localhost)")
    path = parts.path
    if path.endswith("/"):
        path = path[:-1]
    return ServerUrl(
        scheme=parts.scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        segments=_segments(path.removeprefix("/"), what="the URL path"),
        query=parts.query,
    )


class ServerAllowlist:
    """``CDS_FHIR_SERVER_ALLOWLIST``: base URLs the service may call, each with everything under it.

    A bad entry raises :class:`ConfigError` when the app is built, so the service does not start.
    """

    def __init__(self, entries: Iterable[str]):
        parsed: list[ServerUrl] = []
        for entry in entries:
            try:
                parsed.append(parse_server_url(entry))
            except UrlRefused as exc:
                raise ConfigError(f"CDS_FHIR_SERVER_ALLOWLIST entry {entry!r} is not usable: {exc}") from exc
        self._entries = tuple(parsed)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def admits(self, url: ServerUrl) -> bool:
        return any(entry.contains(url) for entry in self._entries)


def _normalise_host(host: str) -> str:
    """Lower-case, one trailing dot dropped, IP literals in canonical form; refuse anything else."""
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise UrlRefused("the URL has no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if "%" in host or not _HOSTNAME.match(host):
        raise UrlRefused("the URL's host is not a valid host name or IP address")
    if all(_NUMERIC_LABEL.match(label) for label in host.split(".")):
        # 127.1, 2130706433: numeric forms that resolvers read as IPv4; never what an EHR means.
        raise UrlRefused("the URL's host is a non-standard numeric address")
    return host


def _segments(path: str, *, what: str) -> tuple[str, ...]:
    """Decoded path segments; empty, '.' and '..' segments and encoded slashes are refused.

    So are those that are empty, '.' or '..' before a ';' (``..;``): servers on Tomcat or Spring,
    common under HAPI FHIR, drop path parameters and then read ``/fhir/..;/admin`` as ``/admin``.
    """
    if not path:
        return ()
    segments = []
    for raw in path.split("/"):
        segment = unquote(raw)
        stem = segment.partition(";")[0]
        if stem in ("", ".", "..") or "/" in segment or "\\" in segment or _FORBIDDEN.search(segment):
            raise UrlRefused(f"{what} has an empty, '.', '..' (before any ';') or encoded-slash segment")
        segments.append(segment)
    return tuple(segments)
