"""Conformance case 13: every bad or missing client JWT gets the same bare 401 (interface.md decision 3)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

from tests.security.conftest import BASE, DISCOVERY, ISS, SecureClient, bearer, logged, write_clients
from tests.security.jwks_host import JwksHost
from tests.security.keys import ClientKey, jwks_of, make_key, sign

SERVICE = "/cds-services/back-knee-risk-factors"


def assert_bare_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.cdshooks.auth" and "401" in r.getMessage()]


def _alg_none(key: ClientKey) -> str:
    import time
    import uuid

    now = int(time.time())
    payload = {"iss": ISS, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(payload, None, algorithm="none", headers={"kid": key.kid})


def _hs256(key: ClientKey) -> str:
    import time
    import uuid

    now = int(time.time())
    payload = {"iss": ISS, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(payload, "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": key.kid})


def _alg_not_text(key: ClientKey) -> str:
    """An unsigned token whose header names its alg as a list: refused before any key is looked up."""
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return ".".join([part({"alg": ["ES384"], "kid": key.kid, "typ": "JWT"}), part({"iss": ISS, "aud": DISCOVERY}), "AAAA"])


def _bad_signature(key: ClientKey) -> str:
    impostor = make_key("ES384", kid=key.kid)  # same kid, someone else's private key
    return sign(impostor, iss=ISS, aud=DISCOVERY)


def _tampered_payload(key: ClientKey) -> str:
    header, payload, signature = sign(key, iss=ISS, aud=DISCOVERY).split(".")
    other = sign(key, iss=ISS, aud=DISCOVERY, sub="someone-else").split(".")[1]
    return ".".join([header, other if other != payload else payload, signature])


# (name, token builder, the check the log must name)
NEGATIVES: list[tuple[str, Callable[[ClientKey], str], str]] = [
    ("alg none", _alg_none, "alg"),
    ("HS256", _hs256, "alg"),
    ("alg not text", _alg_not_text, "alg"),
    ("bad signature", _bad_signature, "signature"),
    ("tampered payload", _tampered_payload, "signature"),
    ("unknown kid", lambda k: sign(make_key("ES384", kid="not-registered"), iss=ISS, aud=DISCOVERY), "kid"),
    ("untrusted iss", lambda k: sign(k, iss="https://intruder.example.org", aud=DISCOVERY), "iss"),
    ("wrong aud: another service", lambda k: sign(k, iss=ISS, aud=f"{BASE}{SERVICE}"), "aud"),
    ("wrong aud: another host", lambda k: sign(k, iss=ISS, aud="https://other.example.org/cds-services"), "aud"),
    ("wrong aud: another port", lambda k: sign(k, iss=ISS, aud=f"{BASE}:8443/cds-services"), "aud"),
    ("wrong aud: path in other case", lambda k: sign(k, iss=ISS, aud=f"{BASE}/CDS-Services"), "aud"),
    ("wrong aud: two values", lambda k: sign(k, iss=ISS, aud=[DISCOVERY, "https://other.example.org/cds-services"]), "aud"),
    # Each once rebuilt from its parts into the URL called, and accepted.
    ("wrong aud: user info", lambda k: sign(k, iss=ISS, aud="http://evil@testserver/cds-services"), "aud"),
    ("wrong aud: fragment", lambda k: sign(k, iss=ISS, aud=f"{DISCOVERY}#frag"), "aud"),
    ("wrong aud: empty fragment", lambda k: sign(k, iss=ISS, aud=f"{DISCOVERY}#"), "aud"),
    ("wrong aud: surrounding spaces", lambda k: sign(k, iss=ISS, aud=f"  {DISCOVERY} "), "aud"),
    ("wrong aud: empty query", lambda k: sign(k, iss=ISS, aud=f"{DISCOVERY}?"), "aud"),
    ("wrong aud: empty port", lambda k: sign(k, iss=ISS, aud="http://testserver:/cds-services"), "aud"),
    ("wrong aud: tab and newline", lambda k: sign(k, iss=ISS, aud="http://test\tserver/cds-ser\nvices"), "aud"),
    ("expired", lambda k: sign(k, iss=ISS, aud=DISCOVERY, lifetime=-120), "exp"),
    ("exp days ahead", lambda k: sign(k, iss=ISS, aud=DISCOVERY, lifetime=3 * 86400), "exp"),
    ("exp absurdly far", lambda k: sign(k, iss=ISS, aud=DISCOVERY, lifetime=10**15), "exp"),
    ("exp past a float's range", lambda k: sign(k, iss=ISS, aud=DISCOVERY, lifetime=10**400), "exp"),
    ("iat in the future", lambda k: sign(k, iss=ISS, aud=DISCOVERY, issued_ago=-600, lifetime=900), "iat"),
    ("nbf in the future", lambda k: sign(k, iss=ISS, aud=DISCOVERY, nbf=9_999_999_999), "nbf"),
    # NumericDate is a JSON number; PyJWT alone took these strings as times.
    ("exp as text", lambda k: sign(k, iss=ISS, aud=DISCOVERY, exp=str(int(time.time()) + 300)), "claims"),
    ("iat as text", lambda k: sign(k, iss=ISS, aud=DISCOVERY, iat=str(int(time.time()))), "claims"),
    ("nbf as text", lambda k: sign(k, iss=ISS, aud=DISCOVERY, nbf=str(int(time.time()) - 10)), "claims"),
    ("missing jti", lambda k: sign(k, iss=ISS, aud=DISCOVERY, drop=("jti",)), "claims"),
    ("missing exp", lambda k: sign(k, iss=ISS, aud=DISCOVERY, drop=("exp",)), "claims"),
    ("missing iat", lambda k: sign(k, iss=ISS, aud=DISCOVERY, drop=("iat",)), "claims"),
    ("missing aud", lambda k: sign(k, iss=ISS, aud=DISCOVERY, drop=("aud",)), "claims"),
    ("jti not text", lambda k: sign(k, iss=ISS, aud=DISCOVERY, jti=12345), "claims"),  # type: ignore[arg-type]
    ("jti too long", lambda k: sign(k, iss=ISS, aud=DISCOVERY, jti="x" * 300), "jti"),
    ("missing kid", lambda k: jwt.encode({"iss": ISS}, k.private, algorithm="ES384"), "kid"),
    ("typ not JWT", lambda k: sign(k, iss=ISS, aud=DISCOVERY, header={"typ": "at+jwt"}), "alg"),
    ("crit header", lambda k: sign(k, iss=ISS, aud=DISCOVERY, header={"crit": ["exp"]}), "malformed"),
    ("key used for another alg", lambda k: jwt.encode(
        {"iss": ISS, "aud": DISCOVERY}, make_key("ES256").private, algorithm="ES256", headers={"kid": k.kid}), "alg"),
    ("not a JWT", lambda k: "not.a.jwt", "malformed"),
]


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory, es384_key: ClientKey) -> Iterator[TestClient]:
    """One app for the whole table (building an app per case would cost seconds); metrics are compared as deltas."""
    directory = tmp_path_factory.mktemp("negatives")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("CDS_") and n != "CDS_TEST_DATABASE_URL"]:
            env.delenv(name)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{directory / 'cds.sqlite3'}",
            auth="jwt",
            trusted_clients_file=write_clients(directory / "clients.yaml", [{"iss": ISS, "jwks": jwks_of(es384_key)}]),
            patient_key="test-patient-key-0123456789abcdef",
        )
    with TestClient(create_app(settings), base_url=BASE) as client:
        yield client


def failures_counted(client: TestClient, check: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'cds_auth_failures_total{{check="{check}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(("name", "build", "check"), NEGATIVES, ids=[n for n, _, _ in NEGATIVES])
def test_bad_token_gets_bare_401_and_one_log_line_naming_the_check(
    shared_client: TestClient,
    es384_key: ClientKey,
    caplog: pytest.LogCaptureFixture,
    name: str,
    build: Callable[[ClientKey], str],
    check: str,
) -> None:
    token = build(es384_key)
    before = failures_counted(shared_client, check)
    with caplog.at_level(logging.INFO):
        response = shared_client.get("/cds-services", headers=bearer(token))
    assert_bare_401(response)
    lines = refusal_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].fields["check"] == check  # type: ignore[attr-defined]
    assert token not in logged(caplog)
    assert failures_counted(shared_client, check) == before + 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no header", "empty", "no token", "basic"],
)
def test_missing_or_non_bearer_header_is_401_everywhere_under_cds_services(
    secure_client: SecureClient, es384_key: ClientKey, headers: dict[str, str]
) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        assert_bare_401(client.get("/cds-services", headers=headers))
        assert_bare_401(client.post(SERVICE, json={"hook": "patient-view"}, headers=headers))
        assert_bare_401(client.post(f"{SERVICE}/feedback", json={"feedback": []}, headers=headers))
        # An unknown service id reveals nothing either: 401 before routing.
        assert_bare_401(client.post("/cds-services/nope", json={}, headers=headers))
        assert_bare_401(client.get("/cds-services/a/b/c", headers=headers))


def test_replayed_jti_is_refused(secure_client: SecureClient, es384_key: ClientKey, caplog: pytest.LogCaptureFixture) -> None:
    token = sign(es384_key, iss=ISS, aud=DISCOVERY)
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        assert client.get("/cds-services", headers=bearer(token)).status_code == 200
        with caplog.at_level(logging.INFO):
            assert_bare_401(client.get("/cds-services", headers=bearer(token)))
    assert [r.fields["check"] for r in refusal_lines(caplog)] == ["replay"]  # type: ignore[attr-defined]


def test_replayed_jti_is_refused_after_a_restart_on_the_same_database(secure_client: SecureClient, es384_key: ClientKey) -> None:
    token = sign(es384_key, iss=ISS, aud=DISCOVERY)
    clients = [{"iss": ISS, "jwks": jwks_of(es384_key)}]
    with secure_client(clients) as first:
        assert first.get("/cds-services", headers=bearer(token)).status_code == 200
    with secure_client(clients) as restarted:  # a new app, same SQLite file
        assert_bare_401(restarted.get("/cds-services", headers=bearer(token)))


def test_same_jti_from_another_issuer_is_not_a_replay(secure_client: SecureClient, es384_key: ClientKey) -> None:
    other_key = make_key("ES384", kid="other-ehr")
    clients = [{"iss": ISS, "jwks": jwks_of(es384_key)}, {"iss": "https://other-ehr.example.org", "jwks": jwks_of(other_key)}]
    with secure_client(clients) as client:
        first = sign(es384_key, iss=ISS, aud=DISCOVERY, jti="shared-nonce")
        second = sign(other_key, iss="https://other-ehr.example.org", aud=DISCOVERY, jti="shared-nonce")
        assert client.get("/cds-services", headers=bearer(first)).status_code == 200
        assert client.get("/cds-services", headers=bearer(second)).status_code == 200


def test_jku_outside_the_prefixes_is_refused_and_never_fetched(
    secure_client: SecureClient, es384_key: ClientKey, jwks_host: JwksHost, caplog: pytest.LogCaptureFixture
) -> None:
    rotated = make_key("ES384", kid="rotated")
    allowed = jwks_host.url("/ehr/keys/")
    outside = jwks_host.publish("/attacker/jwks.json", jwks_of(rotated))
    lookalike = jwks_host.publish("/ehr/keys-evil/jwks.json", jwks_of(rotated))
    dotted = jwks_host.url("/ehr/keys/../../attacker/jwks.json")
    clients = [{"iss": ISS, "jwks": jwks_of(es384_key), "jku_prefixes": [allowed]}]
    with secure_client(clients) as client, caplog.at_level(logging.INFO):
        userinfo = allowed.replace("http://", "http://attacker@") + "jwks.json"
        for jku in (outside, lookalike, dotted, userinfo, "https://127.0.0.1.evil.example/ehr/keys/jwks.json", 42):
            token = sign(rotated, iss=ISS, aud=DISCOVERY, header={"jku": jku})
            assert_bare_401(client.get("/cds-services", headers=bearer(token)))
    assert jwks_host.hits_for("/attacker/jwks.json") == 0
    assert jwks_host.hits_for("/ehr/keys-evil/jwks.json") == 0
    assert [r.fields["check"] for r in refusal_lines(caplog)] == ["jku"] * 6  # type: ignore[attr-defined]


def test_unknown_kid_with_an_allowed_jku_that_lacks_it_is_refused(
    secure_client: SecureClient, es384_key: ClientKey, jwks_host: JwksHost
) -> None:
    stranger = make_key("ES384", kid="stranger")
    jku = jwks_host.publish("/ehr/keys/jwks.json", jwks_of(es384_key))  # does not hold "stranger"
    clients = [{"iss": ISS, "jku_prefixes": [jwks_host.url("/ehr/keys/")]}]
    with secure_client(clients) as client:
        token = sign(stranger, iss=ISS, aud=DISCOVERY, header={"jku": jku})
        assert_bare_401(client.get("/cds-services", headers=bearer(token)))


def test_random_kids_do_not_hammer_the_jwks_host(secure_client: SecureClient, es384_key: ClientKey, jwks_host: JwksHost) -> None:
    """An attacker's made-up kids cost at most one refresh per URL per interval (10 s by default)."""
    url = jwks_host.publish("/jwks.json", jwks_of(es384_key))
    with secure_client([{"iss": ISS, "jwks_url": url}]) as client:
        for n in range(20):
            token = sign(make_key("ES256", kid=f"made-up-{n}"), iss=ISS, aud=DISCOVERY)
            assert_bare_401(client.get("/cds-services", headers=bearer(token)))
    # First contact: one fetch, then one refresh for the first unknown kid; the other 19 are rate-limited.
    assert jwks_host.hits_for("/jwks.json") == 2


def test_without_trusted_clients_every_call_is_401_and_the_start_up_log_says_why(
    secure_client: SecureClient, es384_key: ClientKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), secure_client(None) as client:
        assert_bare_401(client.get("/cds-services", headers=bearer(sign(es384_key, iss=ISS, aud=DISCOVERY))))
    start_up = [r.getMessage() for r in caplog.records if r.name == "service.security"]
    assert any("no trusted CDS clients" in m and "CDS_TRUSTED_CLIENTS_FILE is not set" in m and "401" in m for m in start_up), start_up


def test_an_empty_trusted_clients_file_also_refuses_everyone(
    secure_client: SecureClient, es384_key: ClientKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), secure_client([]) as client:
        assert_bare_401(client.get("/cds-services", headers=bearer(sign(es384_key, iss=ISS, aud=DISCOVERY))))
    assert any("lists no clients" in r.getMessage() for r in caplog.records if r.name == "service.security")


def test_aud_built_from_public_base_url_not_the_host_header(secure_client: SecureClient, es384_key: ClientKey) -> None:
    """With CDS_PUBLIC_BASE_URL set, a token minted for whatever Host the request claims is refused."""
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}], public_base_url="https://cds.example.org") as client:
        token = sign(es384_key, iss=ISS, aud=DISCOVERY)  # http://testserver/cds-services
        assert_bare_401(client.get("/cds-services", headers=bearer(token)))
