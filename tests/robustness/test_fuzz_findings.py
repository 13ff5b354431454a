"""What ``make fuzz`` (schemathesis) found, kept as plain tests so it cannot come back.

- The OpenAPI document referenced request schemas it did not contain, so no generated request
  had a body; every ``$ref`` must resolve, and the documented examples must be real calls.
- Feedback took ``0`` or ``"1700000000"`` as ``outcomeTimestamp`` (pydantic reads numbers as
  Unix times); CDS Hooks says it is a date-time string.
- A prefetch value that is not a resource or null was ignored for undeclared keys, and the
  document did not say that a declared key needs ``resourceType``.
- ``fhirAuthorization.expires_in`` was any integer in the schema; past 64 bits it is a 400.
- A prefetch key a service does not declare was not checked, though the one schema for all
  services says every key holds a resource or null.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.openapi_doc import openapi_json
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request

FEEDBACK = "/cds-services/back-knee-risk-factors/feedback"
CALL = "/cds-services/back-knee-risk-factors"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_in_the_openapi_document_resolves() -> None:
    document = json.loads(openapi_json())
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], f"unresolved {ref}"


def test_the_documented_hook_call_examples_are_answered_200(client: TestClient) -> None:
    document = json.loads(openapi_json())
    examples = document["paths"]["/cds-services/{service_id}"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert len(examples) >= 2
    for name, example in examples.items():
        response = client.post(CALL, json=example["value"])
        assert response.status_code == 200, f"example {name}: {response.status_code} {response.text[:300]}"


@pytest.mark.parametrize("timestamp", [0, 1700000000, "1700000000", "2024-01-01", "yesterday", None, ["2024-01-01T00:00:00Z"]])
def test_outcome_timestamp_must_be_a_date_time_string(client: TestClient, timestamp: object) -> None:
    item = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": timestamp}
    response = client.post(FEEDBACK, json={"feedback": [item]})
    assert response.status_code == 400
    assert "outcomeTimestamp" in response.json()["error"]


@pytest.mark.parametrize("value", [5, "Patient/p1", [], True])
def test_a_prefetch_value_that_is_not_a_resource_or_null_is_400(client: TestClient, value: object) -> None:
    body = hook_request(prefetch={**EMPTY_PREFETCH, "com.example.extra": value})
    response = client.post(CALL, json=body)
    assert response.status_code == 400
    assert "prefetch" in response.json()["error"]


@pytest.mark.parametrize(("service_id", "key"), [("back-knee-risk-factors", "conditions"), ("back-knee-injury-referral", "observations")])
def test_a_prefetch_key_without_resource_type_is_400_declared_or_not(client: TestClient, service_id: str, key: str) -> None:
    # Found with seed 99: the injury-referral service does not declare 'observations' and ignored it.
    body = hook_request(prefetch={**EMPTY_PREFETCH, key: {"entry": []}})
    response = client.post(f"/cds-services/{service_id}", json=body)
    assert response.status_code == 400
    assert f"prefetch key '{key}' must be a FHIR resource" in response.json()["error"]


@pytest.mark.parametrize("digits", ["9223372036854775808", "18446744073709551616", "1" + "0" * 30])
def test_an_expires_in_beyond_64_bits_is_400_as_the_schema_says(client: TestClient, digits: str) -> None:
    # Found with seed 7: the schema promised any integer, the parser and pydantic stop at 64 bits.
    body = json.dumps(hook_request(fhirAuthorization={"access_token": "t", "expires_in": 0})).replace('"expires_in": 0', f'"expires_in": {digits}')
    response = client.post(CALL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "expires_in" in response.json()["error"]
    schema = json.loads(openapi_json())["components"]["schemas"]["FhirAuthorization"]["properties"]["expires_in"]
    assert {"maximum": 2**63 - 1, "minimum": -(2**63)}.items() <= next(s for s in schema["anyOf"] if s.get("type") == "integer").items()
