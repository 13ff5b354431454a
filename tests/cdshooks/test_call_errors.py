"""Conformance cases 4, 11 and 12, and the status codes of interface.md section 4."""

from __future__ import annotations

import gzip

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request

URL = "/cds-services/back-knee-risk-factors"


def test_patient_without_data_gets_an_empty_card_list(client: TestClient) -> None:
    response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH))
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    assert response.headers["cache-control"] == "no-store"


def test_unknown_service_is_404(client: TestClient) -> None:
    response = client.post("/cds-services/nope", json=hook_request(prefetch=EMPTY_PREFETCH))
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_request_metrics_count_the_cds_paths_only(client: TestClient) -> None:
    """The metrics decide "a CDS Hooks path" as authentication does: /cds-servicesX is another path."""
    client.post("/cds-services/nope", json=hook_request(prefetch=EMPTY_PREFETCH))
    client.get("/cds-servicesXYZ")
    counted = [line for line in client.get("/metrics").text.splitlines() if line.startswith("cds_requests_total{")]
    assert counted == ['cds_requests_total{service="unknown",status="404"} 1.0']


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        # orjson says "line 1 column 1 (char 0)" of any body that is not UTF-8, wherever it breaks.
        ('{"hook": "patient-view", "hookInstance": "caf\xe9"}'.encode("latin-1"), "not UTF-8 (byte 0xE9 at offset 45)"),
        ('{"hook": "patient-view"}'.encode("utf-16"), "not UTF-8 (byte 0xFF at offset 0)"),
    ],
)
def test_unparseable_bodies_are_400(client: TestClient, body: bytes, message: str) -> None:
    response = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("drop", "message"),
    [("hook", "hook"), ("hookInstance", "hookInstance"), ("context", "context")],
)
def test_missing_required_fields_are_400_naming_the_field(client: TestClient, drop: str, message: str) -> None:
    body = hook_request(prefetch=EMPTY_PREFETCH)
    del body[drop]
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("context", [{}, {"patientId": ""}, {"patientId": 42}, "not-an-object", ["patientId"]])
def test_bad_context_is_400(client: TestClient, context: object) -> None:
    body = hook_request(prefetch=EMPTY_PREFETCH)
    body["context"] = context
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert "context" in response.json()["error"]


def test_a_hook_instance_longer_than_any_uuid_is_400(client: TestClient) -> None:
    """It is stored with every audit record: 4 MB of it was, before."""
    response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH, hookInstance="h" * 129))
    assert response.status_code == 400
    assert response.json()["error"] == "hookInstance: String should have at most 128 characters"
    assert client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH, hookInstance="h" * 128)).status_code == 200


def test_hook_the_service_does_not_serve_is_400(client: TestClient) -> None:
    response = client.post(URL, json=hook_request(hook="order-sign", prefetch=EMPTY_PREFETCH))
    assert response.status_code == 400
    assert "order-sign" in response.json()["error"]


@pytest.mark.parametrize("host", ["ex ample.org", "example.org/evil?x=", "", "user@example.org", "example.org:80:80"])
def test_a_host_header_no_link_can_start_with_is_400(client: TestClient, host: str) -> None:
    """Card links are built from the Host when CDS_PUBLIC_BASE_URL is unset: they must be absolute URLs."""
    response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH), headers={"host": host})
    assert response.status_code == 400
    assert "is not a host name or address with an optional port" in response.json()["error"]


@pytest.mark.parametrize("host", ["cds.example.org", "cds.example.org:8443", "127.0.0.1:8080", "[::1]:8080", "xn--bcher-kva.example"])
def test_host_headers_of_every_form_are_taken(client: TestClient, host: str) -> None:
    response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH), headers={"host": host})
    assert response.status_code == 200


def test_body_over_the_limit_is_413(make_settings) -> None:  # type: ignore[no-untyped-def]
    from service.app import create_app

    with TestClient(create_app(make_settings(max_body_bytes=2048))) as small:
        body = hook_request(prefetch=EMPTY_PREFETCH)
        body["extension"] = {"com.example.padding": "x" * 4096}
        response = small.post(URL, json=body)
    assert response.status_code == 413
    assert "2048" in response.json()["error"]


def test_deeply_nested_body_is_400(client: TestClient) -> None:
    nested: object = {}
    for _ in range(200):
        nested = {"a": nested}
    body = hook_request(prefetch=EMPTY_PREFETCH)
    body["extension"] = {"com.example.deep": nested}
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert "nested" in response.json()["error"]


def test_wrong_method_is_405_not_500(client: TestClient) -> None:
    response = client.get(URL)
    assert response.status_code == 405


@pytest.mark.parametrize("path", [URL, f"{URL}/feedback"])
@pytest.mark.parametrize("coding", ["gzip", "br", "GZIP, identity"])
def test_a_compressed_body_is_400_naming_its_coding(client: TestClient, path: str, coding: str) -> None:
    """Read as it came, a gzip body was "not valid JSON ... line 1 column 1", and a plain body
    labelled br was taken: neither said what was wrong."""
    body = gzip.compress(orjson.dumps(hook_request(prefetch=EMPTY_PREFETCH)))
    response = client.post(path, content=body, headers={"content-type": "application/json", "content-encoding": coding})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"request body has Content-Encoding '{coding}', which is not supported; send it uncompressed (identity)"
    }


def test_a_coding_on_a_second_header_line_counts_too(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps(hook_request(prefetch=EMPTY_PREFETCH)))
    headers = [("content-type", "application/json"), ("content-encoding", "identity"), ("content-encoding", "gzip")]
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 400
    assert "Content-Encoding 'identity, gzip'" in response.json()["error"]


@pytest.mark.parametrize("coding", ["identity", " Identity ", ""])
def test_an_uncompressed_body_may_say_so(client: TestClient, coding: str) -> None:
    response = client.post(URL, json=hook_request(prefetch=EMPTY_PREFETCH), headers={"content-encoding": coding})
    assert response.status_code == 200
