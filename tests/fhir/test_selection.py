"""Which resources count: Bundles of any type, references of every form, the patient's only."""

from __future__ import annotations

from typing import Any

from service.fhir import FactDefinitions, compute_facts
from service.fhir.resources import flatten
from tests.fhir.builders import ICD, SNOMED, TODAY, condition, facts_of, holding, patient, searchset

OA = "239873007"


def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    """A Synthea-style transaction Bundle: urn:uuid fullUrls and references."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def test_urn_uuid_references_in_a_transaction_bundle(definitions: FactDefinitions) -> None:
    person = patient("2a3d4d46-512f-480f-8eb9-5a11ef3b2176")
    oa = condition(OA, subject="urn:uuid:2a3d4d46-512f-480f-8eb9-5a11ef3b2176")
    other = condition("S83.511A", ICD, subject="urn:uuid:0000-other")
    data = [transaction(person, oa, other)]
    for patient_id in (person["id"], None):
        facts = compute_facts(data, patient_id=patient_id, today=TODAY, definitions=definitions)
        assert facts.patient_id == person["id"]
        assert holding(facts) == {"older_age", "knee_complaint", "knee_arthritis"}


def test_urn_uuid_resolved_through_the_fullurl_not_the_uuid(definitions: FactDefinitions) -> None:
    # The fullUrl uuid differs from the Patient id: the reference resolves to the resource.
    person = patient("p1")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaaa", "resource": person},
            {"fullUrl": "urn:uuid:bbbb", "resource": condition(OA, subject="urn:uuid:aaaa")},
        ],
    }
    assert facts_of(definitions, bundle).holds("knee_arthritis")


def test_other_patients_resources_are_ignored(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        patient("p2", birth="1930-01-01", deceasedBoolean=True),
        patient("p1", birth="2000-01-01"),
        condition(OA, subject="Patient/p2"),
        condition(OA, subject="https://ehr.example/fhir/Patient/p2/_history/3"),
        condition(OA, subject="Group/p1"),
    )
    assert facts.patient_id == "p1" and not facts.deceased
    assert holding(facts) == set()  # nothing of p2


def test_reference_forms_that_name_the_patient(definitions: FactDefinitions) -> None:
    for reference in ("Patient/p1", "https://ehr.example/fhir/Patient/p1", "Patient/p1/_history/2", "urn:uuid:p1"):
        assert facts_of(definitions, condition(OA, subject=reference)).holds("knee_arthritis"), reference


def test_a_subject_by_identifier_only_is_not_someone_else(definitions: FactDefinitions) -> None:
    oa = condition(OA)
    oa["subject"] = {"identifier": {"system": "urn:mrn", "value": "123"}}
    assert facts_of(definitions, oa).holds("knee_arthritis")


def test_searchset_bundles_nested_bundles_and_bare_resources_mix(definitions: FactDefinitions) -> None:
    nested = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": searchset(condition("M54.50", ICD))}]}
    facts = compute_facts(
        [searchset(patient()), nested, condition(OA), None],  # a null prefetch value: no data
        patient_id="p1",
        today=TODAY,
        definitions=definitions,
    )
    assert {"knee_arthritis", "back_complaint", "older_age"} <= holding(facts)


def test_a_single_bundle_may_be_passed_as_is(definitions: FactDefinitions) -> None:
    facts = compute_facts(searchset(patient(), condition(OA)), patient_id="p1", today=TODAY, definitions=definitions)  # type: ignore[arg-type]
    assert facts.holds("knee_arthritis")


def test_a_resource_in_two_prefetch_values_counts_once(definitions: FactDefinitions) -> None:
    oa = condition(OA, resource_id="oa")
    facts = facts_of(definitions, searchset(oa), searchset(oa, oa))
    assert [e.reference for e in facts.facts["knee_arthritis"].evidence] == ["Condition/oa"]


def test_flatten_keeps_fullurls_and_skips_what_is_not_a_resource() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "Patient", "id": "x"}},
            {"response": {"status": "201"}},
            {"resource": "text"},
            7,
            {"resource": {"no": "type"}},
        ],
    }
    resources, full_urls = flatten([bundle, "x", [], {"resourceType": 5}])
    assert resources == [{"resourceType": "Patient", "id": "x"}]
    assert full_urls == {"urn:uuid:x": {"resourceType": "Patient", "id": "x"}}


def test_irrelevant_resources_are_never_validated(definitions: FactDefinitions) -> None:
    # Invalid, but not about anything a fact reads: not validated, not reported.
    broken_encounter = {"resourceType": "Encounter", "id": "e", "status": 17}
    broken_sinusitis = condition("36971009", onset="not a date")
    facts = facts_of(definitions, broken_encounter, broken_sinusitis, condition(OA))
    assert facts.skipped == () and facts.holds("knee_arthritis")


def test_a_condition_coded_in_two_concepts_is_selected_whatever_the_coding_order(definitions: FactDefinitions) -> None:
    """A Condition counts by all of its codings: a coding of another concept beside it does not drop it."""
    knee_oa = {"system": SNOMED, "code": OA, "display": "Osteoarthritis of knee"}
    general_oa = {"system": SNOMED, "code": "396275006", "display": "Osteoarthritis"}
    for codings in ([knee_oa, general_oa], [general_oa, knee_oa]):
        oa = condition(OA, resource_id="oa")
        oa["code"] = {"coding": codings}
        facts = facts_of(definitions, oa)
        assert [e.reference for e in facts.facts["knee_arthritis"].evidence] == ["Condition/oa"], codings
