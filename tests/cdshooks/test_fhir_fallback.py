"""The FHIR server fallback through the app: conformance cases 5-10 and 18 of the CDS Hooks digest,
the allowlist, redirects, pagination, the total time budget, and the token's secrecy.

The FHIR server is the real loopback server of tests/support/fhir_server.py; every test asserts
what that server saw (or that it saw nothing).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config_error import ConfigError
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import SettingsFactory
from tests.support.fhir_server import FhirTestServer

TOKEN = "fallback-access-token-7d2e9b41c0"
RISK = "/cds-services/back-knee-risk-factors"
REFERRAL = "/cds-services/back-knee-injury-referral"

AppFactory = Callable[..., TestClient]


@pytest.fixture
def open_app(make_settings: SettingsFactory) -> Iterator[AppFactory]:
    """Build and start an app with these settings; closed at the end of the test."""
    with ExitStack() as stack:

        def build(**overrides: Any) -> TestClient:
            app = create_app(make_settings(**overrides))
            return stack.enter_context(TestClient(app, base_url="http://testserver"))

        yield build


@pytest.fixture
def app(open_app: AppFactory, fhir_server: FhirTestServer) -> TestClient:
    """An app that may call the loopback FHIR server (and nothing else), 2 s budget."""
    return open_app(fhir_server_allowlist=[fhir_server.base_url], fhir_timeout_seconds=2.0)


@pytest.fixture
def kozey(fhir_server: FhirTestServer) -> str:
    return fhir_server.data.patient_id("Kozey")


def fallback_request(server: str, patient_id: str, *, token: str | None = TOKEN, **extra: Any) -> dict[str, Any]:
    body = hook_request(patient_id=patient_id, fhirServer=server, **extra)
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Condition.read user/Observation.read user/FamilyMemberHistory.read",
            "subject": "back-knee-cds",
        }
    return body


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str)
    return message


def fetch_count(app: TestClient, outcome: str) -> float:
    match = re.search(rf'^cds_fhir_fetches_total\{{outcome="{outcome}"\}} (\S+)$', app.get("/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


_TWICE_GZIPPED_BOMB = gzip.compress(gzip.compress(bytes(64 * 1024 * 1024)))


# --- conformance cases ---------------------------------------------------------------------


def test_case_5_no_prefetch_and_no_fhir_server_is_412(app: TestClient, fhir_server: FhirTestServer) -> None:
    message = error_of(app.post(RISK, json=hook_request(patient_id="example")), 412)
    assert message == (
        "prefetch keys 'patient', 'conditions', 'observations', 'familyHistory' are missing "
        "and no fhirServer or fhirAuthorization was sent"
    )
    assert fhir_server.requests == []


def test_case_6_null_prefetch_is_no_data_and_needs_no_server(app: TestClient, fhir_server: FhirTestServer) -> None:
    body = fallback_request(fhir_server.base_url, "example", prefetch=EMPTY_PREFETCH)
    assert app.post(RISK, json=body).status_code == 200
    assert fhir_server.requests == []


def test_case_7_missing_prefetch_is_fetched_with_the_bearer_token(
    app: TestClient, fhir_server: FhirTestServer, kozey: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = app.post(RISK, json=fallback_request(fhir_server.base_url, kozey))
    assert response.status_code == 200, response.text
    seen = {(r.path, r.params.get("patient", [None])[0]) for r in fhir_server.requests}
    assert seen == {
        (f"/fhir/Patient/{kozey}", None),
        ("/fhir/Condition", kozey),
        ("/fhir/Observation", kozey),
        ("/fhir/FamilyMemberHistory", kozey),
    }
    assert all(r.method == "GET" and r.authorization == f"Bearer {TOKEN}" for r in fhir_server.requests)
    observation = next(r for r in fhir_server.requests if r.resource_type == "Observation")
    assert "http://loinc.org|39156-5" in observation.params["code"][0].split(",")
    assert fetch_count(app, "ok") == 4
    assert_token_not_logged(caplog)


@pytest.mark.parametrize(
    ("switches", "reason"),
    [
        ({"require_token": "another-token"}, "the FHIR server answered 401"),
        ({"status": 403}, "the FHIR server answered 403"),
        ({"status": 500}, "the FHIR server answered 500"),
        ({"status": 503}, "the FHIR server answered 503"),
        ({"garbage_json": True}, "the FHIR server answered with a body that is not JSON"),
        ({"reset_connection": True}, "the FHIR server closed the connection without a complete answer"),
        ({"operation_outcome": True}, "the FHIR server answered with an OperationOutcome"),
        # Stacked codings: 2 KB of 'gzip, gzip' inflated to 1 GiB inside httpx before any cap.
        ({"answer": (_TWICE_GZIPPED_BOMB, {"content-encoding": "gzip, gzip"})}, "the FHIR server's answer was refused: its Content-Encoding 'gzip, gzip' was not asked for"),
    ],
)
def test_case_8_a_failing_fhir_server_is_412_saying_why(
    app: TestClient,
    fhir_server: FhirTestServer,
    caplog: pytest.LogCaptureFixture,
    switches: dict[str, Any],
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    fhir_server.behave(only_types={"Condition"}, **switches)
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})
    message = error_of(app.post(RISK, json=body), 412)
    assert f"prefetch key 'conditions' is missing and {reason}" in message
    assert fetch_count(app, "error") == 1
    assert TOKEN not in message
    assert_token_not_logged(caplog)


def test_case_8_a_stalled_fhir_server_is_412_within_the_budget(
    open_app: AppFactory, fhir_server: FhirTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = open_app(fhir_server_allowlist=[fhir_server.base_url], fhir_timeout_seconds=0.5)
    fhir_server.behave(delay_seconds=5)
    started = time.perf_counter()
    response = app.post(RISK, json=fallback_request(fhir_server.base_url, "example"))
    elapsed = time.perf_counter() - started
    message = error_of(response, 412)
    assert "timed out after 0.5 s" in message
    assert elapsed < 0.5 + 0.5
    assert fetch_count(app, "timeout") == 4  # all four keys were in flight when the budget ran out
    assert_token_not_logged(caplog)


def test_the_time_budget_covers_the_whole_request_not_each_call(
    open_app: AppFactory, fhir_server: FhirTestServer, kozey: str
) -> None:
    # 7 conditions, one a page, 0.15 s a page: every call is well within 0.5 s, all together are not.
    app = open_app(fhir_server_allowlist=[fhir_server.base_url], fhir_timeout_seconds=0.5)
    fhir_server.behave(page_size=1, delay_seconds=0.15, only_types={"Condition"})
    started = time.perf_counter()
    message = error_of(app.post(REFERRAL, json=fallback_request(fhir_server.base_url, kozey)), 412)
    assert "prefetch key 'conditions' is missing and fetching from the FHIR server timed out after 0.5 s" in message
    assert time.perf_counter() - started < 1.0
    assert 2 <= len([r for r in fhir_server.requests if r.resource_type == "Condition"]) <= 4


def test_one_failing_key_ends_the_request_without_waiting_for_the_others(
    app: TestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.behave_for("Observation", "FamilyMemberHistory", delay_seconds=1.5)
    fhir_server.behave_for("Condition", status=500)
    message = error_of(app.post(RISK, json=fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})), 412)
    assert message == (
        "prefetch key 'conditions' is missing and the FHIR server answered 500; prefetch keys 'observations', "
        "'familyHistory' are missing and fetching was abandoned when another key failed"
    )


def test_an_unreachable_allowed_server_is_412(open_app: AppFactory) -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = f"http://127.0.0.1:{port}/fhir"
    app = open_app(fhir_server_allowlist=[server])
    message = error_of(app.post(REFERRAL, json=fallback_request(server, "example", prefetch={"patient": None})), 412)
    assert message == "prefetch key 'conditions' is missing and the service could not connect to the FHIR server"


def test_a_bad_host_header_is_refused_before_anything_is_fetched(app: TestClient, fhir_server: FhirTestServer) -> None:
    response = app.post(REFERRAL, json=fallback_request(fhir_server.base_url, "example", prefetch={"patient": None}), headers={"host": "ex ample.org"})
    assert response.status_code == 400
    assert fhir_server.requests == []  # the EHR's token went nowhere for a call that cannot be answered


def test_proxy_variables_in_the_environment_are_not_followed(
    open_app: AppFactory, fhir_server: FhirTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allowlist names where the token may go; a proxy from the environment is another host."""
    with socket.socket() as probe:  # a "proxy" port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    app = open_app(fhir_server_allowlist=[fhir_server.base_url])
    response = app.post(REFERRAL, json=fallback_request(fhir_server.base_url, "example", prefetch={"patient": None}))
    assert response.status_code == 200, response.text
    assert [r.resource_type for r in fhir_server.requests] == ["Condition"]


def test_case_9_only_the_missing_keys_reach_the_server(app: TestClient, fhir_server: FhirTestServer) -> None:
    prefetch = {"patient": {"resourceType": "Patient", "id": "example"}, "observations": None}
    response = app.post(RISK, json=fallback_request(fhir_server.base_url, "example", prefetch=prefetch))
    assert response.status_code == 200, response.text
    assert sorted(r.path for r in fhir_server.requests) == ["/fhir/Condition", "/fhir/FamilyMemberHistory"]


def test_case_10_an_operation_outcome_in_prefetch_is_fetched_again(app: TestClient, fhir_server: FhirTestServer) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    prefetch = {**EMPTY_PREFETCH, "conditions": outcome}
    response = app.post(RISK, json=fallback_request(fhir_server.base_url, "example", prefetch=prefetch))
    assert response.status_code == 200, response.text
    assert [r.path for r in fhir_server.requests] == ["/fhir/Condition"]


def test_case_10_an_operation_outcome_without_a_server_is_412(app: TestClient) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    body = hook_request(patient_id="example", prefetch={**EMPTY_PREFETCH, "conditions": outcome})
    message = error_of(app.post(RISK, json=body), 412)
    assert message == "prefetch key 'conditions' holds an OperationOutcome and no fhirServer or fhirAuthorization was sent"


def test_case_18_a_paginated_prefetch_without_fhir_access_uses_the_first_page(
    app: TestClient, fhir_server: FhirTestServer
) -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{fhir_server.base_url}/Condition?patient=example&_offset=1"}],
        "entry": [{"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/example"}}}],
    }
    body = hook_request(patient_id="example", prefetch={**EMPTY_PREFETCH, "conditions": page}, extension={"org.example.x": {"a": 1}}, unknownField=1)
    assert app.post(RISK, json=body).status_code == 200
    assert fhir_server.requests == []


def test_case_18_a_paginated_prefetch_is_followed_when_fhir_access_is_given(
    app: TestClient, fhir_server: FhirTestServer
) -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{fhir_server.base_url}/Condition?patient=example&_count=5&_offset=1"}],
    }
    body = fallback_request(fhir_server.base_url, "example", prefetch={**EMPTY_PREFETCH, "conditions": page})
    assert "patient" not in body["fhirAuthorization"]  # 2.0 adds it; 1.0 clients and user scopes omit it
    body["fhirAuthorization"]["scope"] = "user/Condition.rs user/Patient.rs"  # SMART v2 scopes
    assert app.post(RISK, json=body).status_code == 200
    assert [(r.path, r.params["_offset"]) for r in fhir_server.requests] == [("/fhir/Condition", ["1"])]
    assert fhir_server.requests[0].authorization == f"Bearer {TOKEN}"


# --- the allowlist: an unlisted server is never contacted ------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        "{root}/fhirx",  # path look-alike on the listed host and port
        "{root}/fhir/../admin",
        "{root}/fhir/%2e%2e/admin",
        "http://localhost:{port}/{tag}/fhir",  # the same socket under another name is not on the list
        "http://127.0.0.1:{port}@evil.example/{tag}/fhir",
    ],
)
def test_a_server_off_the_allowlist_is_never_contacted(
    app: TestClient, fhir_server: FhirTestServer, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fhir_server_url = server.format(root=fhir_server.root, port=fhir_server.port, tag=fhir_server.tag)
    message = error_of(app.post(RISK, json=fallback_request(fhir_server_url, "example")), 412)
    assert "prefetch keys 'patient', 'conditions', 'observations', 'familyHistory' are missing and fhirServer" in message
    assert fhir_server.requests == []
    assert fetch_count(app, "ok") + fetch_count(app, "error") + fetch_count(app, "timeout") == 0
    assert_token_not_logged(caplog)


def test_a_loopback_port_that_is_not_listed_is_never_contacted(
    open_app: AppFactory, fhir_server: FhirTestServer
) -> None:
    other_port = 1 if fhir_server.port != 1 else 2
    app = open_app(fhir_server_allowlist=[f"http://127.0.0.1:{other_port}/fhir"])
    message = error_of(app.post(RISK, json=fallback_request(fhir_server.base_url, "example")), 412)
    assert message.endswith(f"fhirServer {fhir_server.base_url} is not in CDS_FHIR_SERVER_ALLOWLIST")
    assert fhir_server.requests == []


def test_with_an_empty_allowlist_nothing_is_contacted(open_app: AppFactory, fhir_server: FhirTestServer) -> None:
    app = open_app()
    message = error_of(app.post(RISK, json=fallback_request(fhir_server.base_url, "example")), 412)
    assert message.endswith("is not in CDS_FHIR_SERVER_ALLOWLIST, which is empty")
    assert fhir_server.requests == []


def test_http_to_a_non_loopback_host_is_refused_without_a_connection(app: TestClient, fhir_server: FhirTestServer) -> None:
    message = error_of(app.post(RISK, json=fallback_request("http://ehr.example.org/fhir", "example")), 412)
    assert "fhirServer is not a URL the service may call: the URL must use https" in message
    assert fetch_count(app, "error") == 0
    assert fhir_server.requests == []


def test_a_bad_allowlist_entry_stops_the_app_at_start(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigError, match="CDS_FHIR_SERVER_ALLOWLIST entry 'http://ehr.example.org/fhir'.*https"):
        create_app(make_settings(fhir_server_allowlist=["http://ehr.example.org/fhir"]))


def test_serve_refuses_a_bad_allowlist_entry_in_one_line(tmp_path: Path) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CDS_")},
        "CDS_FHIR_SERVER_ALLOWLIST": "https://ehr.example.org/fhir,http://ehr.example.org/r4",
        "CDS_AUTH": "off",
        "CDS_PATIENT_KEY": "test-patient-key-0123456789abcdef",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.sqlite3'}",
    }
    command = [sys.executable, "-m", "service", "serve", "--port", "0"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: CDS_FHIR_SERVER_ALLOWLIST entry 'http://ehr.example.org/r4' is not usable: "
        "the URL must use https (http is allowed only for 127.0.0.1, ::1 and localhost)"
    )
    assert "Traceback" not in done.stderr


def test_without_fhir_authorization_an_allowed_server_is_not_contacted(app: TestClient, fhir_server: FhirTestServer) -> None:
    body = fallback_request(fhir_server.base_url, "example", token=None, prefetch={"patient": None})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert message == "prefetch key 'conditions' is missing and no fhirAuthorization was sent"
    assert fhir_server.requests == []


def test_an_expired_token_is_not_sent(app: TestClient, fhir_server: FhirTestServer) -> None:
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})
    body["fhirAuthorization"]["expires_in"] = 0
    assert "has expired" in error_of(app.post(REFERRAL, json=body), 412)
    assert fhir_server.requests == []


def test_a_patient_id_that_would_change_the_query_is_400_and_not_sent(app: TestClient, fhir_server: FhirTestServer) -> None:
    body = fallback_request(fhir_server.base_url, "example&_count=100000")
    assert "context.patientId is not a valid FHIR id" in error_of(app.post(REFERRAL, json=body), 400)
    assert fhir_server.requests == []


@pytest.mark.parametrize("token", ["tökén", "two words", "line\r\nX-Injected: 1", "abc=def"])
def test_a_token_no_bearer_header_can_carry_is_400_and_not_sent(app: TestClient, fhir_server: FhirTestServer, token: str) -> None:
    body = fallback_request(fhir_server.base_url, "example", token=token)
    message = error_of(app.post(REFERRAL, json=body), 400)
    assert message.startswith("fhirAuthorization.access_token: String should match pattern")
    assert token not in message
    assert fhir_server.requests == []


def test_an_answer_past_the_calls_byte_limit_once_inflated_is_412(app: TestClient, fhir_server: FhirTestServer) -> None:
    """6 MiB of JSON in 6 KB of gzip: refused once inflated past CDS_MAX_BODY_BYTES (the call's keys share that limit)."""
    fhir_server.behave(only_types={"Condition"}, answer=(gzip.compress(bytes(6 * 1024 * 1024)), {"content-encoding": "gzip"}))
    message = error_of(app.post(RISK, json=fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})), 412)
    assert "the FHIR server's answers for this call are larger than 5242880 bytes (all keys and pages together" in message


def test_keys_fetched_at_once_share_the_calls_byte_limit(open_app: AppFactory, fhir_server: FhirTestServer) -> None:
    """Three answers of 250 KB against a limit of 600 KB: over it, whichever order they arrive in
    (each read its own snapshot of what was left, and most such calls answered 200)."""
    app = open_app(fhir_server_allowlist=[fhir_server.base_url], max_body_bytes=600_000)
    padding = "x" * 250_000
    answer = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "meta": {"tag": [{"code": padding}]}})
    fhir_server.behave(answer=(answer, {}))
    for _ in range(5):
        message = error_of(app.post(RISK, json=fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})), 412)
        assert "answers for this call are larger than 600000 bytes" in message


def test_a_gzipped_answer_is_read(app: TestClient, fhir_server: FhirTestServer) -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Condition", "id": "c1"}}]}
    fhir_server.behave(only_types={"Condition"}, answer=(gzip.compress(orjson.dumps(bundle)), {"content-encoding": "gzip"}))
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None, "observations": None, "familyHistory": None})
    response = app.post(RISK, json=body)
    assert response.status_code == 200, response.text
    assert [r.resource_type for r in fhir_server.requests] == ["Condition"]


# --- redirects and next links never leave the server ----------------------------------------


def test_redirects_are_not_followed(app: TestClient, fhir_server: FhirTestServer) -> None:
    fhir_server.behave(redirect_to=f"{fhir_server.root}/elsewhere/Condition", only_types={"Condition"})
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert "the FHIR server answered with a redirect (302), and redirects are not followed" in message
    assert [r.path for r in fhir_server.requests] == ["/fhir/Condition"]


def test_a_next_link_off_the_server_is_not_followed(app: TestClient, fhir_server: FhirTestServer, kozey: str) -> None:
    fhir_server.behave(page_size=1, next_link_base=f"{fhir_server.root}/other-fhir", only_types={"Condition"})
    body = fallback_request(fhir_server.base_url, kozey, prefetch={"patient": None})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert f"a Bundle next link leads outside fhirServer {fhir_server.base_url}" in message
    assert [r.path for r in fhir_server.requests] == ["/fhir/Condition"]


def test_a_prefetch_next_link_to_another_host_is_not_followed(app: TestClient, fhir_server: FhirTestServer) -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": "https://evil.example/fhir/Condition?p=2"}]}
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None, "conditions": page})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert message == (
        f"prefetch key 'conditions' has more pages and a Bundle next link leads outside fhirServer {fhir_server.base_url}"
    )
    assert fetch_count(app, "ok") + fetch_count(app, "error") == 0


def test_a_prefetch_next_link_that_climbs_out_with_a_path_parameter_is_not_followed(app: TestClient, fhir_server: FhirTestServer) -> None:
    """``..;`` is ``..`` to a server on Tomcat or Spring: the token would go to /admin on the FHIR host."""
    link = f"{fhir_server.base_url}/..;/admin/Condition?page=2"
    page = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": link}]}
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None, "conditions": page})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert message == (
        "prefetch key 'conditions' has more pages and a Bundle next link is not a URL the service may call "
        "(the URL path has an empty, '.', '..' (before any ';') or encoded-slash segment)"
    )
    assert fetch_count(app, "ok") + fetch_count(app, "error") == 0 and fhir_server.requests == []


@pytest.mark.parametrize("link", ["http://[::1/fhir/Condition?p=2", "https://[not-an-address]/Condition"])
def test_a_prefetch_next_link_that_is_not_a_url_is_412(app: TestClient, fhir_server: FhirTestServer, link: str) -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": link}]}
    body = fallback_request(fhir_server.base_url, "example", prefetch={"patient": None, "conditions": page})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert message.startswith(
        "prefetch key 'conditions' has more pages and a Bundle next link is not a URL the service may call (the URL cannot be parsed"
    )
    assert fetch_count(app, "ok") + fetch_count(app, "error") == 0


def test_a_server_next_link_that_is_not_a_url_is_412(app: TestClient, fhir_server: FhirTestServer, kozey: str) -> None:
    fhir_server.behave(page_size=1, next_link_base="http://[::1", only_types={"Condition"})
    body = fallback_request(fhir_server.base_url, kozey, prefetch={"patient": None})
    message = error_of(app.post(REFERRAL, json=body), 412)
    assert "a Bundle next link is not a URL the service may call (the URL cannot be parsed (Invalid IPv6 URL))" in message
    assert [r.path for r in fhir_server.requests] == ["/fhir/Condition"]


def test_pagination_follows_next_links_within_the_page_limit(
    open_app: AppFactory, fhir_server: FhirTestServer, kozey: str
) -> None:
    app = open_app(fhir_server_allowlist=[fhir_server.base_url], fhir_page_limit=7)
    fhir_server.behave(page_size=1, only_types={"Condition"})
    assert app.post(REFERRAL, json=fallback_request(fhir_server.base_url, kozey)).status_code == 200
    assert len([r for r in fhir_server.requests if r.resource_type == "Condition"]) == 7


def test_a_server_that_paginates_forever_is_stopped_at_the_page_limit(
    open_app: AppFactory, fhir_server: FhirTestServer, kozey: str
) -> None:
    app = open_app(fhir_server_allowlist=[fhir_server.base_url], fhir_page_limit=7)
    fhir_server.behave(page_size=1, paginate_forever=True, only_types={"Condition"})
    message = error_of(app.post(REFERRAL, json=fallback_request(fhir_server.base_url, kozey)), 412)
    assert "the FHIR server has more than CDS_FHIR_PAGE_LIMIT=7 pages of results" in message
    assert len([r for r in fhir_server.requests if r.resource_type == "Condition"]) == 7


# --- limits ----------------------------------------------------------------------------------


def test_a_prefetch_with_too_many_resources_is_413(open_app: AppFactory) -> None:
    app = open_app(max_prefetch_resources=10)
    entries = [{"resource": {"resourceType": "Condition", "id": f"c{i}"}} for i in range(11)]
    prefetch = {**EMPTY_PREFETCH, "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": entries}}
    message = error_of(app.post(RISK, json=hook_request(patient_id="example", prefetch=prefetch)), 413)
    assert message == "the prefetch holds 11 resources, more than the limit of 10 (CDS_MAX_PREFETCH_RESOURCES)"


def assert_token_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The access token appears in no log line, message argument or structured field."""
    assert caplog.records, "expected some log records to check"
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.__dict__)
    assert TOKEN not in caplog.text
