"""Age and deceased from the Patient resource (clinical-rules.md 1: Age, Deceased, Older age)."""

from __future__ import annotations

from datetime import date

import pytest

from service.fhir import FactDefinitions
from tests.fhir.builders import TODAY, facts_of, load_fixture, patient


@pytest.mark.parametrize(
    ("birth", "older"),
    [
        ("1974-06-15", True),  # 50 today
        ("1974-06-16", False),  # 50 tomorrow
        ("1940-01-01", True),
        ("2000-01-01", False),
        ("1974", False),  # partial: 1974-12-31, the youngest possible: 49
        ("1973", True),  # 1973-12-31: 50
        ("1974-06", False),  # 1974-06-30: 49
        ("1974-05", True),  # 1974-05-31: 50
    ],
)
def test_older_age_is_50_or_more_in_whole_years(definitions: FactDefinitions, birth: str, older: bool) -> None:
    assert facts_of(definitions, patient(birth=birth)).holds("older_age") is older


def test_older_age_evidence_and_value(definitions: FactDefinitions) -> None:
    fact = facts_of(definitions, patient(birth="1960-03-01")).facts["older_age"]
    assert fact.holds and fact.values == {"age": 64}
    (evidence,) = fact.evidence
    assert evidence.resource_type == "Patient" and evidence.resource_id == "p1"
    assert evidence.date == date(1960, 3, 1) and evidence.value == "age 64"


@pytest.mark.parametrize(
    ("birth", "label"),
    [("1960-03-01", "Birth date 1960-03-01"), ("1960", "Birth date 1960 (counted as 1960-12-31)"), ("1960-03", "Birth date 1960-03 (counted as 1960-03-31)")],
)
def test_a_partial_birth_date_says_which_day_the_age_counts_from(definitions: FactDefinitions, birth: str, label: str) -> None:
    """A card showed "Birth date 1960, 1960-12-31, age 63", which reads as a second birth date."""
    (evidence,) = facts_of(definitions, patient(birth=birth)).facts["older_age"].evidence
    assert evidence.label == label


def test_leap_day_birthday(definitions: FactDefinitions) -> None:
    born = patient(birth="1972-02-29")
    assert not facts_of(definitions, born, today=date(2022, 2, 28)).holds("older_age")
    assert facts_of(definitions, born, today=date(2022, 3, 1)).holds("older_age")


def test_no_birth_date_means_no_age_fact(definitions: FactDefinitions) -> None:
    assert not facts_of(definitions, patient(birth=None)).holds("older_age")


def test_masked_birth_date_means_no_age_fact(definitions: FactDefinitions) -> None:
    masked = load_fixture("au-core-test-data/Patient-italia-sofia-suppressed-birthDate.json")
    facts = facts_of(definitions, masked, patient_id=masked["id"])
    assert facts.skipped == ()
    assert not facts.holds("older_age")
    born = load_fixture("au-core-test-data/Patient-italia-sofia.json")  # b. 1989-05-07
    assert not facts_of(definitions, born, patient_id=born["id"], today=date(2039, 5, 6)).holds("older_age")
    assert facts_of(definitions, born, patient_id=born["id"], today=date(2039, 5, 7)).holds("older_age")


def test_no_patient_resource_means_no_age_fact(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, with_patient=False)
    assert not facts.holds("older_age") and not facts.deceased


def test_a_birth_date_after_today_is_no_age(definitions: FactDefinitions) -> None:
    assert not facts_of(definitions, patient(birth="2030-01-01")).holds("older_age")


@pytest.mark.parametrize(
    ("fields", "deceased"),
    [
        ({"deceasedBoolean": True}, True),
        ({"deceasedDateTime": "2011-09-07T10:00:00-04:00"}, True),
        ({"deceasedDateTime": "2011"}, True),
        ({"deceasedBoolean": False}, False),
        # Not valid R4, so the Patient is skipped; still deceased: no card at all (found by a review).
        ({"deceasedDateTime": "2023-13-01"}, True),
        ({"deceasedBoolean": True, "birthDate": "1950-02-30"}, True),
        ({}, False),
    ],
)
def test_deceased(definitions: FactDefinitions, fields: dict[str, object], deceased: bool) -> None:
    assert facts_of(definitions, patient(**fields)).deceased is deceased


def test_the_patient_is_found_by_id(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, patient("other", birth="1930-01-01", deceasedBoolean=True), patient("p1", birth="2000-01-01"))
    assert facts.patient_id == "p1" and not facts.deceased and not facts.holds("older_age")


def test_without_an_id_the_first_patient_is_the_patient(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, patient("a", birth="1930-01-01"), patient("b", birth="2000-01-01"), patient_id=None)
    assert facts.patient_id == "a" and facts.holds("older_age")
    assert facts.today == TODAY
