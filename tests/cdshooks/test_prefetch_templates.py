"""Prefetch templates (CDS Hooks 2.0 tokens) and sorting a prefetch into present and missing keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.cdshooks.bundles import count_resources, merge_pages, next_link
from service.cdshooks.errors import HookRequestError
from service.cdshooks.prefetch import TemplateError, classify_prefetch, render_template, template_tokens
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request

CONTEXT = {"patientId": "123", "userId": "Practitioner/abc", "encounterId": "enc-1"}


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("Patient/{{context.patientId}}", "Patient/123"),
        ("Condition?patient={{context.patientId}}", "Condition?patient=123"),
        ("Encounter/{{ context.encounterId }}", "Encounter/enc-1"),
        ("Practitioner/{{userPractitionerId}}", "Practitioner/abc"),
        ("{{context.userId}}", "Practitioner/abc"),
        (
            "Observation?patient={{context.patientId}}&code=http://loinc.org|39156-5,http://loinc.org|29463-7",
            "Observation?patient=123&code=http://loinc.org|39156-5,http://loinc.org|29463-7",
        ),
        ("Patient", "Patient"),
    ],
)
def test_tokens_are_filled_from_the_context(template: str, rendered: str) -> None:
    assert render_template(template, CONTEXT) == rendered


@pytest.mark.parametrize(
    ("token", "user"),
    [
        ("userPractitionerRoleId", "PractitionerRole/r1"),
        ("userPatientId", "Patient/r1"),
        ("userRelatedPersonId", "RelatedPerson/r1"),
    ],
)
def test_user_tokens_take_the_id_of_the_matching_user_type(token: str, user: str) -> None:
    assert render_template(f"X/{{{{{token}}}}}", {"patientId": "1", "userId": user}) == "X/r1"


@pytest.mark.parametrize(
    ("template", "context", "message"),
    [
        ("Encounter/{{context.encounterId}}", {"patientId": "1"}, "context.encounterId, which the request does not carry"),
        ("Practitioner/{{userPractitionerId}}", {"patientId": "1"}, "needs context.userId"),
        ("Practitioner/{{userPractitionerId}}", {"patientId": "1", "userId": "PractitionerRole/9"}, "is a PractitionerRole"),
        ("X/{{context.draft}}", {"patientId": "1", "draft": {"id": "1"}}, "primitive context.draft"),
    ],
)
def test_a_context_without_what_a_token_needs_makes_the_key_unobtainable(
    template: str, context: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        render_template(template, context)


@pytest.mark.parametrize(
    ("template", "context", "message"),
    [
        ("Condition?patient={{context.patientId}}", lambda bad: {"patientId": bad}, "context.patientId is not a valid FHIR id"),
        (
            "PractitionerRole?practitioner={{userPractitionerId}}",
            lambda bad: {"patientId": "1", "userId": f"Practitioner/{bad}"},
            "context.userId must be a FHIR reference",
        ),
    ],
    ids=["context.patientId", "userPractitionerId"],
)
@pytest.mark.parametrize(
    "bad_id",
    ["123&_count=100000", "../../admin", "a b", "x/y", "%2e%2e", "1?x=1", "a" * 65, "ünï"],
)
def test_a_context_value_that_is_no_fhir_id_is_a_400_not_a_query(
    template: str, context: Callable[[str], dict[str, Any]], message: str, bad_id: str
) -> None:
    """A patient id, or the id part of a userId a user token fills, that is no FHIR id is refused, never put in a query."""
    with pytest.raises(HookRequestError, match=message):
        render_template(template, context(bad_id))


def test_a_user_id_that_is_no_reference_is_a_400() -> None:
    with pytest.raises(HookRequestError, match="context.userId must be a FHIR reference"):
        render_template("Practitioner/{{userPractitionerId}}", {"patientId": "1", "userId": "abc"})


@pytest.mark.parametrize(
    "template",
    ["Medication/{{context.medication.id}}", "X/{{today()}}", "X/{{%priorKey}}", "X/{{context.patientId}", "X/{{}}"],
)
def test_tokens_outside_cds_hooks_2_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        template_tokens(template)


DECLARED = {"patient": "Patient/{{context.patientId}}", "conditions": "Condition?patient={{context.patientId}}"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


def test_absent_and_operation_outcome_keys_are_missing_and_null_is_no_data() -> None:
    report = classify_prefetch({"patient": None, "conditions": OUTCOME}, DECLARED)
    assert report.present == {"patient": None}
    assert report.missing == {"conditions": "holds an OperationOutcome"}
    report = classify_prefetch({"conditions": {"resourceType": "Bundle", "type": "searchset"}}, DECLARED)
    assert report.missing == {"patient": "is missing"}
    assert classify_prefetch(None, DECLARED).missing == {"patient": "is missing", "conditions": "is missing"}


def test_undeclared_keys_are_ignored() -> None:
    report = classify_prefetch({"patient": None, "conditions": None, "other": [1, 2]}, DECLARED)
    assert set(report.present) == {"patient", "conditions"}


def test_a_bundle_with_a_next_link_is_present_and_marked_paged() -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": "https://x/fhir/C?p=2"}]}
    report = classify_prefetch({"patient": None, "conditions": bundle}, DECLARED)
    assert report.paged == ("conditions",)
    assert report.present["conditions"] is bundle


@pytest.mark.parametrize(("value", "described"), [([], "a list"), ("Patient/1", "a string"), ({"id": "1"}, "without resourceType"), (3, "int")])
def test_a_value_that_is_no_resource_is_a_400_naming_the_key(client: TestClient, value: object, described: str) -> None:
    response = client.post("/cds-services/back-knee-risk-factors", json=hook_request(prefetch={**EMPTY_PREFETCH, "patient": value}))
    assert response.status_code == 400
    assert re.search(f"prefetch key 'patient' must be a FHIR resource.*{described}", response.json()["error"])


def test_resources_are_counted_through_bundles() -> None:
    inner = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}] * 3}
    outer = {"resourceType": "Bundle", "entry": [{"resource": inner}, {"resource": {"resourceType": "Patient"}}, {"x": 1}, "junk"]}
    assert count_resources([outer, {"resourceType": "Patient"}, None, {"resourceType": "Bundle", "entry": "junk"}]) == 5


def test_broken_links_are_read_as_no_next_link() -> None:
    assert next_link({"link": "junk"}) is None
    assert next_link({"link": [None, {"relation": "next"}, {"relation": "next", "url": ""}]}) is None
    assert next_link({"link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "b"}]}) == "b"


def test_pages_merge_into_one_searchset_without_paging_links() -> None:
    first = {"resourceType": "Bundle", "type": "searchset", "total": 3, "link": [{"relation": "next", "url": "x"}], "entry": [1]}
    merged = merge_pages([first, {"resourceType": "Bundle", "entry": [2, 3]}, {"resourceType": "Bundle"}])
    assert merged == {"resourceType": "Bundle", "type": "searchset", "total": 3, "entry": [1, 2, 3]}
