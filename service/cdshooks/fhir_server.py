"""Calls to the EHR's FHIR server for one hook request: one token, one deadline, one resource budget.

CDS Hooks 2.0 section 3: a service fetches what the prefetch lacks from ``fhirServer`` with
``Authorization: Bearer <fhirAuthorization.access_token>``. The token is transient: it lives in
this object only (hidden from ``repr``), goes to no other host, and is never logged. Every
failure of the transport or the server becomes one :class:`FhirServerError` whose ``reason``
is safe to show the client and to log (no URL, since URLs carry patient ids).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
import orjson

from service.cdshooks.bundles import bundle_entries, is_bundle, merge_pages, next_link
from service.cdshooks.capped_body import ACCEPT_ENCODING, BodyRefused, BodyTooLarge, ByteBudget, read_capped
from service.cdshooks.fhir_allowlist import ServerUrl, UrlRefused, parse_server_url
from service.cdshooks.json_depth import nesting_exceeds
from service.metrics import Metrics

__all__ = ["FETCHES_PER_SERVER", "FetchSlots", "FhirServerError", "FhirServerSession", "ResourceBudget"]

log = logging.getLogger("service.cdshooks.fhir_server")

Outcome = Literal["ok", "error", "timeout"]

# Fetches in flight to one FHIR server (scheme, host, port) at a time, per process. The HTTP
# client's connections are not capped as a whole: one server that stalls holds at most this many,
# and calls to another server (or a JWKS fetch) never wait behind them for a connection.
FETCHES_PER_SERVER = 50


class FetchSlots:
    """A bounded number of fetches in flight per server origin; beyond it a fetch waits for a
    slot, within its request's deadline. Built once per app: origins are the allowlist's."""

    def __init__(self, per_server: int = FETCHES_PER_SERVER) -> None:
        self._per_server = per_server
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}

    def of(self, server: ServerUrl) -> asyncio.Semaphore:
        origin = (server.scheme, server.host, server.port)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self._per_server)
        return slots


class FhirServerError(Exception):
    """A prefetch key could not be fetched; ``reason`` completes 'prefetch key 'x' is missing and ...'."""

    def __init__(self, reason: str, *, outcome: Outcome = "error"):
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome


class ResourceBudget:
    """``CDS_MAX_PREFETCH_RESOURCES`` across prefetch and everything fetched for one request."""

    def __init__(self, limit: int, *, used: int = 0):
        self.limit = limit
        self.used = used

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise FhirServerError(
                f"the FHIR server returned more resources than CDS_MAX_PREFETCH_RESOURCES={self.limit} allows"
            )


@dataclass(slots=True, kw_only=True)
class FhirServerSession:
    """One hook request's access to one allowlisted FHIR server.

    ``deadline`` is a ``loop.time()`` value shared by every call of the request, so the whole
    gathering (all keys, all pages) ends within ``CDS_FHIR_TIMEOUT_SECONDS``, not each call.
    """

    client: httpx.AsyncClient
    server: ServerUrl
    token: str = field(repr=False)
    deadline: float
    budget_seconds: float
    page_limit: int
    max_depth: int
    bytes: ByteBudget
    resources: ResourceBudget
    metrics: Metrics
    slots: FetchSlots

    async def fetch(self, query: str, *, key: str) -> dict[str, Any] | None:
        """The answer to a rendered prefetch template: a resource, a merged searchset Bundle, or None.

        A read (``Type/id``) answered 404 or 410 is "no data", like a ``null`` prefetch value.
        """
        try:
            url = self.server.join(query)
        except UrlRefused as exc:
            raise FhirServerError(f"its template does not give a usable FHIR query ({exc})") from exc
        added = url.segments[len(self.server.segments) :]
        if not url.query and len(added) == 2:
            resource = await self._get(url, key=key, read=True)
            if resource is None:
                return None
            if resource.get("resourceType") != added[0]:
                raise FhirServerError(f"the FHIR server answered a read of {added[0]} with a {resource.get('resourceType')}")
            self.resources.take(1)
            return resource
        bundle = await self._get(url, key=key, read=False)
        if bundle is None or not is_bundle(bundle):
            raise FhirServerError("the FHIR server answered a search with something other than a Bundle")
        self.resources.take(len(bundle_entries(bundle)))
        return await self.complete(bundle, key=key, page_url=url)

    async def complete(self, bundle: dict[str, Any], *, key: str, page_url: ServerUrl | None = None) -> dict[str, Any]:
        """Follow ``link[next]`` up to ``CDS_FHIR_PAGE_LIMIT`` pages (the first included); one Bundle back.

        Next links must stay under ``fhirServer``: a link elsewhere is refused, never followed.
        """
        pages = [bundle]
        current = page_url.url if page_url is not None else self.server.base + "/"
        while (link := next_link(pages[-1])) is not None:
            if len(pages) >= self.page_limit:
                raise FhirServerError(
                    f"the FHIR server has more than CDS_FHIR_PAGE_LIMIT={self.page_limit} pages of results"
                )
            try:
                target = parse_server_url(_resolved(link, current), allow_query=True)
            except UrlRefused as exc:
                raise FhirServerError(f"a Bundle next link is not a URL the service may call ({exc})") from exc
            if not self.server.contains(target):
                raise FhirServerError(f"a Bundle next link leads outside fhirServer {self.server.base}")
            page = await self._get(target, key=key, read=False)
            if page is None or not is_bundle(page):
                raise FhirServerError("the FHIR server answered a next-page request with something other than a Bundle")
            self.resources.take(len(bundle_entries(page)))
            pages.append(page)
            current = target.url
        return merge_pages(pages) if len(pages) > 1 else bundle

    async def _get(self, url: ServerUrl, *, key: str, read: bool) -> dict[str, Any] | None:
        """One GET within the request's deadline; counted in ``cds_fhir_fetches_total``."""
        started = time.perf_counter()
        outcome: Outcome | None = "error"
        status: int | None = None
        try:
            async with asyncio.timeout_at(self.deadline), self.slots.of(url):
                remaining = max(self.deadline - asyncio.get_running_loop().time(), 0.001)
                async with self.client.stream(
                    "GET",
                    url.url,
                    headers={
                        "Authorization": f"Bearer {self.token}",
                        "Accept": "application/fhir+json",
                        "Accept-Encoding": ACCEPT_ENCODING,
                    },
                    timeout=remaining,
                    follow_redirects=False,
                ) as response:
                    status = response.status_code
                    if read and status in (404, 410):
                        outcome = "ok"
                        return None
                    _check_status(status)
                    body = await self._read_capped(response)
            document = _parse(body)
            if nesting_exceeds(body, self.max_depth):  # as a request body's (CDS_MAX_JSON_DEPTH)
                raise FhirServerError(f"the FHIR server answered with JSON nested deeper than {self.max_depth} levels")
            outcome = "ok"
            return document
        except (TimeoutError, httpx.TimeoutException) as exc:  # our deadline, or httpx's per-call limit
            outcome = "timeout"
            raise FhirServerError(
                f"fetching from the FHIR server timed out after {self.budget_seconds} s (CDS_FHIR_TIMEOUT_SECONDS)",
                outcome="timeout",
            ) from exc
        except httpx.ConnectError as exc:
            if _certificate_refused(exc):
                raise FhirServerError(
                    "the FHIR server's TLS certificate could not be verified (a private CA goes in SSL_CERT_FILE)"
                ) from exc
            raise FhirServerError("the service could not connect to the FHIR server") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise FhirServerError("the FHIR server closed the connection without a complete answer") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FhirServerError(f"the request to the FHIR server failed ({type(exc).__name__})") from exc
        except asyncio.CancelledError:
            outcome = None  # abandoned because another key failed: neither a success nor this server's failure
            raise
        finally:
            if outcome is not None:
                self.metrics.fhir_fetches.labels(outcome=outcome).inc()
            log.debug(
                "FHIR server call",
                extra={
                    "fields": {
                        "key": key,
                        "server": self.server.host,
                        "status": status,
                        "outcome": outcome or "abandoned",
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The body, refusing more than the bytes left for this request once decoded (a server must not exhaust our memory)."""
        try:
            return await read_capped(response, self.bytes)
        except BodyTooLarge:
            raise FhirServerError(
                f"the FHIR server's answers for this call are larger than {self.bytes.limit} bytes "
                "(all keys and pages together; CDS_MAX_BODY_BYTES)"
            ) from None
        except BodyRefused as exc:
            raise FhirServerError(f"the FHIR server's answer was refused: {exc}") from None


def _certificate_refused(exc: BaseException) -> bool:
    """True when ``exc`` comes from a certificate that failed verification (somewhere in its chain of causes)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _resolved(link: str, base: str) -> str:
    """``link`` made absolute against ``base``; :class:`UrlRefused` when it cannot be parsed (``http://[::1``)."""
    try:
        return urljoin(base, link)
    except ValueError as exc:
        raise UrlRefused(f"the URL cannot be parsed ({exc})") from None


def _check_status(status: int) -> None:
    if 300 <= status < 400:
        raise FhirServerError(f"the FHIR server answered with a redirect ({status}), and redirects are not followed")
    if status != 200:
        raise FhirServerError(f"the FHIR server answered {status}")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirServerError("the FHIR server answered with a body that is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise FhirServerError("the FHIR server answered with JSON that is not a FHIR resource")
    if document["resourceType"] == "OperationOutcome":
        raise FhirServerError("the FHIR server answered with an OperationOutcome")
    return document
