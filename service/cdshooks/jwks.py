"""Remote JWK Sets (a client's ``jwks_url``, or a ``jku`` under its prefixes), fetched and cached.

Fetched with the one shared ``httpx.AsyncClient`` (redirects never followed), bounded in time and
size. Keys are cached for ``CDS_JWKS_CACHE_SECONDS``; a token whose ``kid`` is not in the cache
triggers one refresh (key rotation), but at most one per URL every ``min_refresh_seconds``, so a
stream of tokens with made-up kids cannot turn the service into a hammer on the client's JWKS
host. When a fetch fails, keys already known stay usable for ``max_stale_seconds`` (the EHR's
key host being down should not stop decision support), then are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import orjson

from service.cdshooks.capped_body import ACCEPT_ENCODING, BodyRefused, ByteBudget, read_capped
from service.cdshooks.keys import VerificationKey, parse_jwks

__all__ = ["JwksCache"]

log = logging.getLogger("service.cdshooks.jwks")

DEFAULT_TIMEOUT_SECONDS = 3.0
DEFAULT_MIN_REFRESH_SECONDS = 10.0
DEFAULT_MAX_STALE_SECONDS = 3600.0
DEFAULT_MAX_BYTES = 256 * 1024  # real JWK Sets are a few KiB
DEFAULT_MAX_URLS = 256


@dataclass(slots=True)
class _Entry:
    keys: dict[str, VerificationKey] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch
    failed_at: float | None = None  # last failed fetch
    refreshed_at: float | None = None  # last refresh caused by an unknown kid
    fetches: int = 0  # fetches tried, so a caller can tell whether one happened since it looked
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    """Keys by URL; one fetch at a time per URL (concurrent callers wait for it and share it)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ttl_seconds: float,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        min_refresh_seconds: float = DEFAULT_MIN_REFRESH_SECONDS,
        max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_urls: int = DEFAULT_MAX_URLS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._http = http
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._min_refresh = min_refresh_seconds
        self._max_stale = max_stale_seconds
        self._max_bytes = max_bytes
        self._max_urls = max_urls
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def knows(self, url: str) -> bool:
        """True once ``url`` has been fetched (successfully or not) and is still cached."""
        return url in self._entries

    async def keys(self, url: str) -> Mapping[str, VerificationKey]:
        """The keys at ``url``: from the cache while fresh, else fetched now."""
        entry = self._entry(url)
        if self._fresh(entry):
            return entry.keys
        async with entry.lock:
            if not self._fresh(entry) and not self._failed_recently(entry):
                await self._fetch(url, entry)
            return self._usable(entry)

    async def refresh(self, url: str, *, unless_fetched_since: int | None = None) -> Mapping[str, VerificationKey]:
        """Fetch ``url`` again because a token named a kid it lacks; rate-limited per URL.

        Not when a fetch was tried after the caller read ``fetches`` (``unless_fetched_since``): the
        document it lacked the kid in is already the newest, or the host just failed (a second
        wait on a hanging host doubled the call's time).
        """
        entry = self._entry(url)
        async with entry.lock:
            now = self._clock()
            fetched_meanwhile = unless_fetched_since is not None and entry.fetches != unless_fetched_since
            if not fetched_meanwhile and (entry.refreshed_at is None or now - entry.refreshed_at >= self._min_refresh):
                entry.refreshed_at = now
                await self._fetch(url, entry)
            return self._usable(entry)

    async def find(self, url: str, kid: str) -> VerificationKey | None:
        """The key ``kid`` at ``url``: cached keys first, then one (rate-limited) refresh for a rotated key."""
        seen = self._entry(url).fetches
        return (await self.keys(url)).get(kid) or (await self.refresh(url, unless_fetched_since=seen)).get(kid)

    def _entry(self, url: str) -> _Entry:
        entry = self._entries.get(url)
        if entry is None:
            entry = self._entries[url] = _Entry()
            while len(self._entries) > self._max_urls:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(url)
        return entry

    def _fresh(self, entry: _Entry) -> bool:
        return entry.fetched_at is not None and self._clock() - entry.fetched_at < self._ttl

    def _failed_recently(self, entry: _Entry) -> bool:
        return entry.failed_at is not None and self._clock() - entry.failed_at < self._min_refresh

    def _usable(self, entry: _Entry) -> Mapping[str, VerificationKey]:
        if entry.fetched_at is None or self._clock() - entry.fetched_at >= self._ttl + self._max_stale:
            return {}
        return entry.keys

    async def _fetch(self, url: str, entry: _Entry) -> None:
        started = self._clock()
        entry.fetches += 1
        try:
            async with asyncio.timeout(self._timeout):
                document = await self._download(url)
        except (TimeoutError, httpx.HTTPError, _FetchError, orjson.JSONDecodeError) as exc:
            entry.failed_at = self._clock()
            reason = f"timed out after {self._timeout:g} s" if isinstance(exc, TimeoutError) else _describe(exc)
            log.warning(
                "JWKS fetch failed; keys already cached stay in use until they go stale",
                extra={"fields": {"jwks_url": url, "reason": reason, "cached_keys": len(entry.keys)}},
            )
            return
        keys, problems = parse_jwks(document)
        for problem in problems:
            log.warning("JWKS key skipped", extra={"fields": {"jwks_url": url, "reason": problem}})
        entry.keys = keys
        entry.fetched_at = self._clock()
        entry.failed_at = None
        log.info(
            "JWKS fetched",
            extra={"fields": {"jwks_url": url, "kids": sorted(keys), "ms": round((entry.fetched_at - started) * 1000, 1)}},
        )

    async def _download(self, url: str) -> object:
        headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
        async with self._http.stream("GET", url, headers=headers, timeout=self._timeout) as response:
            if response.status_code != 200:
                hint = " (redirects are not followed; configure the final URL)" if response.is_redirect else ""
                raise _FetchError(f"HTTP {response.status_code}{hint}")
            try:
                body = await read_capped(response, ByteBudget(self._max_bytes))
            except BodyRefused as exc:
                raise _FetchError(f"response refused: {exc}") from None
        return orjson.loads(body)


class _FetchError(Exception):
    """The JWKS host answered, but not with a JWK Set we will read."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return "response is not JSON"
    if isinstance(exc, _FetchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
