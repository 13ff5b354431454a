"""Remote JWK Sets over real HTTP (loopback host): cache, refresh on rotation, rate limit, limits, failures."""

from __future__ import annotations

import gzip
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from service.cdshooks.jwks import JwksCache
from tests.security.conftest import logged
from tests.security.jwks_host import JwksHost
from tests.security.keys import jwks_of, make_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as client:  # as the app's shared client
        yield client


def cache(http: httpx.AsyncClient, clock: Clock, **options: float) -> JwksCache:
    return JwksCache(http, ttl_seconds=options.pop("ttl_seconds", 300), clock=clock, **options)  # type: ignore[arg-type]


async def test_keys_are_cached_for_the_ttl(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    clock, key = Clock(), make_key("ES384", kid="a")
    url = jwks_host.publish("/jwks.json", jwks_of(key))
    jwks = cache(http, clock)
    assert set(await jwks.keys(url)) == {"a"}
    clock.now += 299
    assert set(await jwks.keys(url)) == {"a"}
    assert jwks_host.hits_for("/jwks.json") == 1
    clock.now += 2
    await jwks.keys(url)
    assert jwks_host.hits_for("/jwks.json") == 2


async def test_an_unknown_kid_costs_one_fetch_when_the_cache_was_empty(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    """The document just fetched is the newest: refreshing it at once again would be a second fetch for nothing."""
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    assert await cache(http, Clock()).find(url, "z") is None
    assert jwks_host.hits_for("/jwks.json") == 1


async def test_a_hanging_host_is_waited_for_once_per_call(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    jwks_host.delay_seconds = 2
    assert await cache(http, Clock(), timeout_seconds=0.2).find(url, "a") is None
    assert jwks_host.hits_for("/jwks.json") == 1  # before: the failed fetch, then a refresh waiting as long again


async def test_a_rotated_key_is_found_by_one_refresh(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    clock = Clock()
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    jwks = cache(http, clock)
    assert await jwks.find(url, "a") is not None
    jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a"), make_key("ES384", kid="b")))
    assert await jwks.find(url, "b") is not None
    assert jwks_host.hits_for("/jwks.json") == 2


async def test_refresh_is_rate_limited_per_url(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    clock = Clock()
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    jwks = cache(http, clock, min_refresh_seconds=10)
    await jwks.keys(url)
    jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="b")))
    assert set(await jwks.refresh(url)) == {"b"}  # the first unknown kid refreshes at once (rotation)
    for _ in range(5):
        await jwks.refresh(url)
    assert jwks_host.hits_for("/jwks.json") == 2
    clock.now += 10
    await jwks.refresh(url)
    assert jwks_host.hits_for("/jwks.json") == 3


async def test_a_slow_host_times_out(http: httpx.AsyncClient, jwks_host: JwksHost, caplog: pytest.LogCaptureFixture) -> None:
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    jwks_host.delay_seconds = 2
    with caplog.at_level(logging.WARNING):
        assert await cache(http, Clock(), timeout_seconds=0.2).keys(url) == {}
    assert "timed out after 0.2 s" in logged(caplog)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"status": 500}, "HTTP 500"),
        ({"redirect_to": "https://elsewhere.example.org/jwks.json"}, "redirects are not followed"),
        ({"body": b"<html>not json"}, "response is not JSON"),
        ({"body": b"{" + b" " * 300_000 + b"}"}, "larger than"),
        ({"body": gzip.compress(b"{" + b" " * 300_000 + b"}"), "content_encoding": "gzip"}, "larger than"),
        ({"body": gzip.compress(gzip.compress(b"{}")), "content_encoding": "gzip, gzip"}, "was not asked for"),
    ],
    ids=["server error", "redirect", "not json", "too large", "too large once inflated", "stacked codings"],
)
async def test_failed_fetches_give_no_keys_and_say_why(
    http: httpx.AsyncClient, jwks_host: JwksHost, caplog: pytest.LogCaptureFixture, setup: dict[str, object], reason: str
) -> None:
    url = jwks_host.url("/jwks.json")
    for name, value in setup.items():
        setattr(jwks_host, name, value)
    with caplog.at_level(logging.WARNING):
        assert await cache(http, Clock()).keys(url) == {}
    assert reason in logged(caplog)
    assert jwks_host.hits_for("/jwks.json") == 1  # the redirect target is never asked


async def test_a_failing_host_keeps_known_keys_for_a_while_and_is_not_retried_in_a_loop(
    http: httpx.AsyncClient, jwks_host: JwksHost
) -> None:
    clock = Clock()
    url = jwks_host.publish("/jwks.json", jwks_of(make_key("ES384", kid="a")))
    jwks = cache(http, clock, ttl_seconds=60, min_refresh_seconds=10, max_stale_seconds=600)
    await jwks.keys(url)
    jwks_host.status = 503
    clock.now += 61
    assert set(await jwks.keys(url)) == {"a"}  # stale but usable
    assert set(await jwks.keys(url)) == {"a"}  # and the failure is not retried at once
    assert jwks_host.hits_for("/jwks.json") == 2
    clock.now += 600
    assert await jwks.keys(url) == {}  # too stale: dropped


async def test_unusable_keys_in_a_remote_set_are_skipped(
    http: httpx.AsyncClient, jwks_host: JwksHost, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_key("ES384", kid="good")
    url = jwks_host.publish("/jwks.json", {"keys": [good.public_jwk(), {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}, {"kty": "EC"}]})
    with caplog.at_level(logging.WARNING):
        assert set(await cache(http, Clock()).keys(url)) == {"good"}
    assert "kty 'oct' is not supported" in logged(caplog)


async def test_a_key_with_json_where_a_string_belongs_is_skipped_and_the_set_still_counts_as_fetched(
    http: httpx.AsyncClient, jwks_host: JwksHost, caplog: pytest.LogCaptureFixture
) -> None:
    """A list as crv or alg once failed the whole set with a TypeError: a 500 for the call, and,
    the set never counting as fetched, a new fetch on every call whatever the rate limit."""
    good = make_key("ES256", kid="good")
    listed = {**make_key("ES256", kid="listed").public_jwk(), "crv": ["P-256"]}
    algs = {**make_key("ES256", kid="algs").public_jwk(), "alg": ["ES256"]}
    url = jwks_host.publish("/jwks.json", {"keys": [listed, algs, good.public_jwk()]})
    jwks = cache(http, Clock())
    with caplog.at_level(logging.WARNING):
        assert set(await jwks.keys(url)) == {"good"}
    assert "EC crv ['P-256'] is not supported" in logged(caplog)
    assert "alg ['ES256'] does not fit" in logged(caplog)
    for _ in range(3):
        assert await jwks.find(url, "made-up") is None
    assert jwks_host.hits_for("/jwks.json") == 2  # the first fetch, then one refresh for an unknown kid
