"""Conformance case 19 and decision 12: CORS preflight without a JWT, and Allow-Origin on every answer, errors too."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config_error import ConfigError
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import SettingsFactory
from tests.security.conftest import BASE, ISS, SecureClient, bearer
from tests.security.keys import ClientKey, jwks_of, sign

SANDBOX = "https://sandbox.cds-hooks.org"
EHR = "https://ehr.example.org:8443"
ORIGINS = f"{SANDBOX}, {EHR}/"
SERVICE = "/cds-services/back-knee-risk-factors"


def preflight(client: TestClient, path: str, origin: str, *, method: str = "POST", headers: str = "authorization,content-type") -> httpx.Response:
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


@pytest.mark.parametrize("path", ["/cds-services", SERVICE, f"{SERVICE}/feedback"])
@pytest.mark.parametrize("origin", [SANDBOX, EHR])
def test_preflight_from_an_allowed_origin_needs_no_jwt(secure_client: SecureClient, es384_key: ClientKey, path: str, origin: str) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:
        response = preflight(client, path, origin)
    assert response.status_code == 204
    headers = response.headers
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-methods"] == "GET, POST"
    assert {h.strip() for h in headers["access-control-allow-headers"].split(",")} == {"authorization", "content-type"}
    assert "Origin" in headers["vary"]


@pytest.mark.parametrize("configured", ["https://sandbox.cds-hooks.org:443", "HTTPS://Sandbox.cds-hooks.org:443/", "http://[::1]:80"])
def test_an_origin_configured_with_its_default_port_matches_what_browsers_send(
    secure_client: SecureClient, es384_key: ClientKey, configured: str
) -> None:
    sent = "http://[::1]" if configured.startswith("http://") else SANDBOX  # browsers leave the default port out
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=configured) as client:
        response = preflight(client, SERVICE, sent)
    assert response.status_code == 204 and response.headers["access-control-allow-origin"] == sent


def test_a_browser_client_may_read_the_request_id(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:
        response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert response.status_code == 401 and response.headers["access-control-expose-headers"] == "X-Request-ID"
    assert response.headers["x-request-id"]


def test_preflight_from_a_disallowed_origin_gets_no_allow_origin(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:
        for origin in ("https://evil.example.org", "https://sandbox.cds-hooks.org.evil.example", "null", "http://sandbox.cds-hooks.org"):
            response = preflight(client, SERVICE, origin)
            assert response.status_code == 403
            assert "access-control-allow-origin" not in response.headers
            assert "not in CDS_CORS_ORIGINS" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "headers", "message"),
    [("DELETE", "authorization", "method 'DELETE'"), ("POST", "authorization,x-forwarded-host", "header 'x-forwarded-host'")],
)
def test_preflight_for_other_methods_or_headers_is_refused(
    secure_client: SecureClient, es384_key: ClientKey, method: str, headers: str, message: str
) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:
        response = preflight(client, SERVICE, SANDBOX, method=method, headers=headers)
    assert response.status_code == 403
    assert message in response.json()["error"]


def test_every_answer_to_an_allowed_origin_carries_allow_origin_errors_included(
    secure_client: SecureClient, es384_key: ClientKey
) -> None:
    origin = {"Origin": SANDBOX}
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:

        def token(path: str) -> dict[str, str]:
            return {**origin, **bearer(sign(es384_key, iss=ISS, aud=f"{BASE}{path}"))}

        answers = {
            200: client.get("/cds-services", headers=token("/cds-services")),
            401: client.get("/cds-services", headers=origin),
            400: client.post(SERVICE, content=b"{not json", headers={**token(SERVICE), "content-type": "application/json"}),
            404: client.post("/cds-services/nope", json=hook_request(prefetch=EMPTY_PREFETCH), headers=token("/cds-services/nope")),
            412: client.post(SERVICE, json=hook_request(), headers=token(SERVICE)),
        }
    for status, response in answers.items():
        assert response.status_code == status, (status, response.text)
        assert response.headers["access-control-allow-origin"] == SANDBOX, status
        assert "Origin" in response.headers["vary"]


def test_a_disallowed_origin_gets_the_answer_but_no_allow_origin(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], cors_origins=ORIGINS) as client:
        response = client.get("/cds-services", headers={"Origin": "https://evil.example.org"})
    assert response.status_code == 401
    assert "access-control-allow-origin" not in response.headers


def test_without_cors_origins_no_cors_headers_are_sent(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        response = client.get("/cds-services", headers={"Origin": SANDBOX})
        refused = preflight(client, SERVICE, SANDBOX)
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in refused.headers


def test_wildcard_is_for_auth_off_only(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(auth="off", cors_origins="*")), base_url=BASE) as client:
        response = client.post(SERVICE, json=hook_request(prefetch=EMPTY_PREFETCH), headers={"Origin": "http://localhost:3000"})
        allowed = preflight(client, SERVICE, "http://localhost:3000")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert allowed.headers["access-control-allow-origin"] == "*"
    with pytest.raises(ValueError, match="CDS_CORS_ORIGINS='\\*' needs CDS_AUTH=off"):
        make_settings(auth="jwt", cors_origins="*")


@pytest.mark.parametrize("entry", ["sandbox.cds-hooks.org", "https://sandbox.cds-hooks.org/app", "ftp://x.example", "https://"])
def test_an_origin_that_is_not_an_origin_stops_the_start(make_settings: SettingsFactory, entry: str) -> None:
    with pytest.raises(ConfigError, match="CDS_CORS_ORIGINS: .* is not an origin; write scheme://host\\[:port\\]"):
        create_app(make_settings(cors_origins=entry))
