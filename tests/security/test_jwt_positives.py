"""Conformance cases 2 and 14: valid client JWTs in every shape a real CDS client sends get 200."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.security.conftest import BASE, DISCOVERY, ISS, SecureClient, bearer
from tests.security.jwks_host import JwksHost
from tests.security.keys import ClientKey, jwks_of, make_key, sign

SERVICE_ID = "back-knee-risk-factors"
SERVICE = f"{BASE}/cds-services/{SERVICE_ID}"


@pytest.mark.parametrize("alg", ["ES384", "RS384", "ES256", "RS256"])
def test_each_allowed_algorithm_is_accepted(secure_client: SecureClient, alg: str) -> None:
    key = make_key(alg)
    with secure_client([{"iss": ISS, "jwks": jwks_of(key)}]) as client:
        response = client.get("/cds-services", headers=bearer(sign(key, iss=ISS, aud=DISCOVERY)))
    assert response.status_code == 200
    assert response.json()["services"]


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": [DISCOVERY]},
        {"sub": "sandbox-user"},
        {"tenant": "hospital-42"},
        {"sub": "user", "tenant": "t", "fhirUser": "Practitioner/1", "custom": {"nested": [1, 2]}},
        {"aud": "HTTP://TestServer:80/cds-services"},  # scheme and host compare case-insensitively, default port too
    ],
    ids=["aud one-element array", "extra sub", "tenant", "many extra claims", "aud spelled differently"],
)
def test_token_shapes_real_clients_send_are_accepted(secure_client: SecureClient, es384_key: ClientKey, claims: dict[str, Any]) -> None:
    claims = {"aud": DISCOVERY, **claims}
    aud = claims.pop("aud")
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        response = client.get("/cds-services", headers=bearer(sign(es384_key, iss=ISS, aud=aud, **claims)))
    assert response.status_code == 200


def test_rs384_service_call_with_full_prefetch(secure_client: SecureClient, rs384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(rs384_key)}]) as client:
        response = client.post(
            f"/cds-services/{SERVICE_ID}",
            json=hook_request(prefetch=EMPTY_PREFETCH),
            headers=bearer(sign(rs384_key, iss=ISS, aud=SERVICE)),
        )
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_token_minted_for_discovery_does_not_open_a_service(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        response = client.post(
            f"/cds-services/{SERVICE_ID}", json=hook_request(prefetch=EMPTY_PREFETCH), headers=bearer(sign(es384_key, iss=ISS, aud=DISCOVERY))
        )
    assert response.status_code == 401


def test_clock_skew_tolerates_a_slightly_fast_or_slow_client(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        just_expired = sign(es384_key, iss=ISS, aud=DISCOVERY, lifetime=-30)  # exp 30 s ago, skew 60 s
        issued_ahead = sign(es384_key, iss=ISS, aud=DISCOVERY, issued_ago=-30)  # iat 30 s ahead
        assert client.get("/cds-services", headers=bearer(just_expired)).status_code == 200
        assert client.get("/cds-services", headers=bearer(issued_ahead)).status_code == 200
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], jwt_clock_skew_seconds=0) as strict:
        assert strict.get("/cds-services", headers=bearer(sign(es384_key, iss=ISS, aud=DISCOVERY, lifetime=-30))).status_code == 401


@pytest.mark.parametrize("aud_path", ["/feedback", ""], ids=["aud is the feedback URL", "aud is the service URL"])
def test_feedback_accepts_either_audience(secure_client: SecureClient, es384_key: ClientKey, aud_path: str) -> None:
    feedback = {"feedback": [{"card": "7f3f2d2e-0000-4000-8000-000000000001", "outcome": "overridden", "outcomeTimestamp": "2024-01-01T00:00:00Z"}]}
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        response = client.post(
            f"/cds-services/{SERVICE_ID}/feedback", json=feedback, headers=bearer(sign(es384_key, iss=ISS, aud=SERVICE + aud_path))
        )
    assert response.status_code == 200


def test_public_base_url_is_the_audience(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], public_base_url="https://cds.example.org/") as client:
        token = sign(es384_key, iss=ISS, aud="https://cds.example.org/cds-services")
        assert client.get("/cds-services", headers=bearer(token)).status_code == 200


def test_key_rotation_via_an_allowed_jku(secure_client: SecureClient, jwks_host: JwksHost) -> None:
    """Case 14: the client publishes a new key under a new kid at its jku; the service picks it up at once."""
    old, new = make_key("ES384", kid="2025-01"), make_key("ES384", kid="2025-07")
    jku = jwks_host.publish("/ehr/.well-known/jwks.json", jwks_of(old))
    clients = [{"iss": ISS, "jku_prefixes": [jwks_host.url("/ehr/")]}]
    with secure_client(clients) as client:
        assert client.get("/cds-services", headers=bearer(sign(old, iss=ISS, aud=DISCOVERY, header={"jku": jku}))).status_code == 200
        jwks_host.publish("/ehr/.well-known/jwks.json", jwks_of(new))  # rotated: the old key is gone
        assert client.get("/cds-services", headers=bearer(sign(new, iss=ISS, aud=DISCOVERY, header={"jku": jku}))).status_code == 200
        # Cached keys serve further calls without another fetch.
        hits = jwks_host.hits_for("/ehr/.well-known/jwks.json")
        assert client.get("/cds-services", headers=bearer(sign(new, iss=ISS, aud=DISCOVERY, header={"jku": jku}))).status_code == 200
        assert jwks_host.hits_for("/ehr/.well-known/jwks.json") == hits


def test_key_rotation_via_jwks_url(secure_client: SecureClient, jwks_host: JwksHost) -> None:
    old, new = make_key("RS384", kid="rsa-1"), make_key("ES384", kid="ec-2")
    url = jwks_host.publish("/jwks.json", jwks_of(old))
    with secure_client([{"iss": ISS, "jwks_url": url}]) as client:
        assert client.get("/cds-services", headers=bearer(sign(old, iss=ISS, aud=DISCOVERY))).status_code == 200
        jwks_host.publish("/jwks.json", jwks_of(old, new))
        assert client.get("/cds-services", headers=bearer(sign(new, iss=ISS, aud=DISCOVERY))).status_code == 200
    assert jwks_host.hits_for("/jwks.json") == 2  # the first fetch, and one refresh for the new kid


def test_pinned_key_works_when_the_jku_is_unreachable(secure_client: SecureClient, es384_key: ClientKey, jwks_host: JwksHost) -> None:
    """Decision 2: the sandbox always sends a jku; a key pinned inline is used without fetching it."""
    token = sign(es384_key, iss=ISS, aud=DISCOVERY, header={"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        assert client.get("/cds-services", headers=bearer(token)).status_code == 200


def test_routes_outside_cds_services_need_no_jwt(secure_client: SecureClient, es384_key: ClientKey) -> None:
    """Decision 1: health, metrics, rules and the OpenAPI document are open."""
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        for path in ("/health/live", "/metrics", "/rules", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path
