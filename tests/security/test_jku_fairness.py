"""Forged tokens (no key needed to send one) must not use up a jku client's chance to be verified.

A client with only ``jku_prefixes`` is verified by fetching the JWK Set its token's ``jku`` names;
new URLs are rate-limited so made-up ones cannot each cost a fetch. Before, the limit was one per
issuer: whoever sent a forged token with a fresh jku every few seconds kept the real EHR out.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.cdshooks.jwks import JwksCache
from service.cdshooks.jwt_verifier import AuthFailure, JwtVerifier
from service.cdshooks.trusted_clients import parse_trusted_clients
from tests.security.conftest import DISCOVERY, ISS
from tests.security.jwks_host import JwksHost
from tests.security.keys import jwks_of, make_key, sign

EHR, ATTACKER = "10.0.0.5", "203.0.113.66"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _always_new(issuer: str, jti: str, expires_at: Any) -> bool:
    return True


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield client


def _verifier(http: httpx.AsyncClient, jwks_host: JwksHost, **jwks_options: Any) -> JwtVerifier:
    clients = parse_trusted_clients([{"iss": ISS, "jku_prefixes": [jwks_host.url("/ehr/")]}], source="test")
    return JwtVerifier(clients, jwks=JwksCache(http, ttl_seconds=300, **jwks_options), remember_jti=_always_new, clock_skew_seconds=60)


def _forged(jwks_host: JwksHost) -> str:
    """The client's iss, a made-up kid and jku under its prefix, a signature by nobody's key."""
    return sign(make_key("ES384", kid=f"k-{uuid.uuid4().hex[:6]}"), iss=ISS, aud=DISCOVERY, header={"jku": jwks_host.url(f"/ehr/{uuid.uuid4().hex}.json")})


async def test_forged_tokens_from_elsewhere_do_not_lock_the_real_client_out(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    real = make_key("ES384", kid="ehr-1")
    jku = jwks_host.publish("/ehr/jwks.json", jwks_of(real))
    verifier = _verifier(http, jwks_host)
    for _ in range(3):  # the attacker got there first, and keeps trying
        with pytest.raises(AuthFailure):
            await verifier.verify(f"Bearer {_forged(jwks_host)}", audiences=[DISCOVERY], caller=ATTACKER)
    token = sign(real, iss=ISS, aud=DISCOVERY, header={"jku": jku})
    identity = await verifier.verify(f"Bearer {token}", audiences=[DISCOVERY], caller=EHR)
    assert identity.iss == ISS


async def test_a_jku_that_verified_a_token_stays_usable_when_evicted_from_the_cache(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    """Made-up jku URLs from many addresses push the real one out of the JWKS cache: it is fetched again, not rate-limited."""
    real = make_key("ES384", kid="ehr-1")
    jku = jwks_host.publish("/ehr/jwks.json", jwks_of(real))
    verifier = _verifier(http, jwks_host, max_urls=4)
    assert (await verifier.verify(f"Bearer {sign(real, iss=ISS, aud=DISCOVERY, header={'jku': jku})}", audiences=[DISCOVERY], caller=EHR)).iss == ISS
    for n in range(8):
        with pytest.raises(AuthFailure):
            await verifier.verify(f"Bearer {_forged(jwks_host)}", audiences=[DISCOVERY], caller=f"203.0.113.{n}")
    token = sign(real, iss=ISS, aud=DISCOVERY, header={"jku": jku})
    assert (await verifier.verify(f"Bearer {token}", audiences=[DISCOVERY], caller=EHR)).iss == ISS


async def test_one_address_still_gets_one_new_jku_per_interval(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    verifier = _verifier(http, jwks_host)
    for _ in range(5):
        with pytest.raises(AuthFailure):
            await verifier.verify(f"Bearer {_forged(jwks_host)}", audiences=[DISCOVERY], caller=ATTACKER)
    assert sum(jwks_host.hits.values()) == 1


async def test_a_forged_token_does_not_exempt_its_jku_from_the_limit(http: httpx.AsyncClient, jwks_host: JwksHost) -> None:
    """Only a verified signature proves a jku: a forged token naming the real one leaves it rate-limited."""
    real = make_key("ES384", kid="ehr-1")
    jku = jwks_host.publish("/ehr/jwks.json", jwks_of(real))
    verifier = _verifier(http, jwks_host, max_urls=4)
    forged = sign(make_key("ES384", kid="ehr-1"), iss=ISS, aud=DISCOVERY, header={"jku": jku})  # the real kid and jku, another key
    with pytest.raises(AuthFailure) as first:
        await verifier.verify(f"Bearer {forged}", audiences=[DISCOVERY], caller=ATTACKER)
    assert first.value.check == "signature"
    for n in range(8):  # push the real jku out of the JWKS cache
        with pytest.raises(AuthFailure):
            await verifier.verify(f"Bearer {_forged(jwks_host)}", audiences=[DISCOVERY], caller=f"198.51.100.{n}")
    with pytest.raises(AuthFailure) as again:
        await verifier.verify(f"Bearer {forged}", audiences=[DISCOVERY], caller=ATTACKER)
    assert again.value.check == "kid" and "rate-limited" in again.value.reason
    assert jwks_host.hits_for("/ehr/jwks.json") == 1
