"""Family history, both ways: FamilyMemberHistory and a Z82.61/Z82.69 Condition."""

from __future__ import annotations

import pytest

from service.fhir import FactDefinitions
from tests.fhir.builders import ICD, SNOMED, condition, facts_of, family_history, load_fixture, patient


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("239873007", SNOMED),  # knee OA
        ("M17.0", ICD),
        ("278860009", SNOMED),  # chronic low back pain
        ("M54.50", ICD),
        ("23056005", SNOMED),  # sciatica
        ("M51.26", ICD),  # a disc disorder
        ("M51.9", ICD),
        ("30989003", SNOMED),  # knee pain
        ("444470001", SNOMED),  # a knee injury
        ("69896004", SNOMED),  # rheumatoid arthritis, any site
        ("396275006", SNOMED),  # osteoarthritis, any site
        ("M19.90", ICD),
        ("M06.9", ICD),
    ],
)
def test_a_family_member_with_a_back_or_knee_condition_or_arthritis(definitions: FactDefinitions, code: str, system: str) -> None:
    facts = facts_of(definitions, family_history(code, system))
    assert facts.holds("family_history")
    assert facts.holds("older_age")
    assert not facts.holds("knee_arthritis") and not facts.holds("back_complaint")  # the relative's, not the patient's


def test_family_history_evidence_names_the_relative(definitions: FactDefinitions) -> None:
    member = family_history("239873007", relationship="FTH", relationship_display="father", resource_id="fmh")
    member["condition"][0]["code"]["coding"][0]["display"] = "Osteoarthritis of knee"
    member["date"] = "2020-05"
    (evidence,) = facts_of(definitions, member).facts["family_history"].evidence
    assert evidence.reference == "FamilyMemberHistory/fmh"
    assert evidence.label == "Father: Osteoarthritis of knee (SNOMED 239873007)"
    assert str(evidence.date) == "2020-05-01"
    assert evidence.dated == "recorded"  # FamilyMemberHistory.date: when it was recorded
    assert evidence.day_shown == "2020-05"  # as written, not as its first day


@pytest.mark.parametrize(
    ("code", "system"),
    [("315619001", SNOMED), ("64859006", SNOMED), ("S72.001A", ICD), ("M25.511", ICD), ("162864005", SNOMED)],
)
def test_other_family_conditions_do_not_count(definitions: FactDefinitions, code: str, system: str) -> None:
    assert not facts_of(definitions, family_history(code, system)).holds("family_history")


def test_the_hl7_example_myocardial_infarction_does_not_count(definitions: FactDefinitions) -> None:
    father = load_fixture("hl7-r4-examples/familymemberhistory-example.json")
    facts = facts_of(definitions, patient("example"), father, patient_id="example")
    assert not facts.holds("family_history")
    father["condition"][0]["code"] = {"coding": [{"system": SNOMED, "code": "239873007"}]}
    facts = facts_of(definitions, patient("example"), father, patient_id="example")
    assert facts.facts["family_history"].evidence[0].label == "Father: Knee arthritis (SNOMED 239873007)"


def test_entered_in_error_family_history_is_ignored(definitions: FactDefinitions) -> None:
    assert not facts_of(definitions, family_history("239873007", status="entered-in-error")).holds("family_history")


@pytest.mark.parametrize("status", ["partial", "completed", "health-unknown"])
def test_family_history_counts_in_any_other_status(definitions: FactDefinitions, status: str) -> None:
    assert facts_of(definitions, family_history("239873007", status=status)).holds("family_history")


def test_another_patients_family_history_is_ignored(definitions: FactDefinitions) -> None:
    assert not facts_of(definitions, family_history("239873007", patient_ref="Patient/p2")).holds("family_history")


@pytest.mark.parametrize("code", ["Z82.61", "Z82.69"])
def test_a_family_history_condition_on_the_patient(definitions: FactDefinitions, code: str) -> None:
    fact = facts_of(definitions, condition(code, ICD, resource_id="fh")).facts["family_history"]
    assert fact.holds and fact.evidence[0].reference == "Condition/fh"


def test_a_family_history_condition_only_needs_to_be_usable(definitions: FactDefinitions) -> None:
    resolved = condition("Z82.61", ICD, clinical="resolved", abatementDateTime="2020-01-01")
    assert facts_of(definitions, resolved).holds("family_history")
    assert not facts_of(definitions, condition("Z82.61", ICD, verification="entered-in-error")).holds("family_history")


@pytest.mark.parametrize("code", ["Z82.62", "Z82.8", "Z82.0"])
def test_other_family_history_codes_do_not_count(definitions: FactDefinitions, code: str) -> None:
    assert not facts_of(definitions, condition(code, ICD)).holds("family_history")


def test_the_hl7_family_history_condition_example_is_colon_cancer(definitions: FactDefinitions) -> None:
    colon = load_fixture("hl7-r4-examples/condition-example-family-history.json")
    facts = facts_of(definitions, patient("example"), colon, patient_id="example")
    assert not facts.holds("family_history") and facts.skipped == ()


def test_both_ways_together_list_both(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, family_history("M17.0", ICD, resource_id="a"), condition("Z82.61", ICD, resource_id="b"))
    refs = [e.reference for e in facts.facts["family_history"].evidence]
    assert refs == ["FamilyMemberHistory/a", "Condition/b"]
