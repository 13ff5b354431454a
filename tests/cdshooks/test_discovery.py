"""Conformance case 1: discovery shape."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.support.no_empty_values import assert_no_null_or_empty

SERVICE_IDS = {"back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance"}
# CDS Hooks 2.0 prefetch tokens valid for patient-view: root-level context fields and user tokens.
VALID_TOKENS = {
    "context.patientId",
    "context.userId",
    "context.encounterId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}


def test_discovery_lists_the_three_services_with_valid_prefetch(client: TestClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.json()
    assert_no_null_or_empty(body)
    services = body["services"]
    assert {service["id"] for service in services} == SERVICE_IDS
    pairs = [(service["id"], service["hook"]) for service in services]
    assert len(pairs) == len(set(pairs)), "(id, hook) pairs must be unique"
    for service in services:
        for field in ("hook", "description", "id", "title"):
            assert isinstance(service[field], str) and service[field]
        assert service["hook"] == "patient-view"
        for key, template in service["prefetch"].items():
            assert isinstance(key, str) and isinstance(template, str)
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens, f"{service['id']}.{key} has no token"
            assert set(tokens) <= VALID_TOKENS, f"{service['id']}.{key} uses {tokens}"


def test_prefetch_declared_per_service_as_the_contract_says(client: TestClient) -> None:
    """interface.md decision 5."""
    services = {service["id"]: service["prefetch"] for service in client.get("/cds-services").json()["services"]}
    assert set(services["back-knee-risk-factors"]) == {"patient", "conditions", "observations", "familyHistory"}
    assert set(services["back-knee-injury-referral"]) == {"patient", "conditions"}
    assert set(services["back-knee-care-guidance"]) == {"patient", "conditions", "observations"}
    observations = services["back-knee-risk-factors"]["observations"]
    for loinc in ("39156-5", "29463-7", "8302-2"):
        assert f"http://loinc.org|{loinc}" in observations


@pytest.mark.parametrize(("value", "named"), [({"a": [{}]}, "$.a[0] is empty"), ({"a": {"b": None}}, "$.a.b is null"), ([1, ""], "$[1] is empty")])
def test_the_empty_value_check_names_what_it_found(value: object, named: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(named)):
        assert_no_null_or_empty(value)
