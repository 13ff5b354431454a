"""Validation sees the elements the facts read (validation.py ``_USED_ELEMENTS``), all of them.

Elements nobody reads are not validated: a broken address or narrative neither costs time nor
makes a patient's birth date unusable. Everything read, its ``_element`` extension sibling,
every choice type of a choice element read, and modifier extensions still are.
"""

from __future__ import annotations

from service.fhir import FactDefinitions
from tests.fhir.builders import condition, facts_of, patient, weight

OA = "239873007"


def test_a_broken_element_nobody_reads_does_not_make_the_patient_unusable(definitions: FactDefinitions) -> None:
    person = patient(birth="1950-01-01", address="not a list", text={"status": "nonsense"}, telecom=[{"system": 7}])
    facts = facts_of(definitions, person)
    assert facts.holds("older_age") and facts.skipped == ()


def test_a_broken_element_nobody_reads_does_not_drop_a_condition(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(OA, resource_id="c1", category="not a list", note=[{"text": 5}]))
    assert facts.holds("knee_arthritis") and facts.skipped == ()


def test_the_extension_sibling_of_a_read_element_is_validated(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, patient(birth="1950-01-01", _birthDate={"extension": "not a list"}))
    assert not facts.holds("older_age")
    assert facts.skipped[0].startswith("Patient: not valid FHIR R4: _birthDate")


def test_every_choice_type_of_a_read_choice_element_is_validated(definitions: FactDefinitions) -> None:
    person = patient(birth="1950-01-01", deceasedBoolean=True, deceasedDateTime="2020-01-01")
    facts = facts_of(definitions, person)
    assert not facts.holds("older_age") and facts.skipped[0].startswith("Patient: not valid FHIR R4")


def test_a_broken_modifier_extension_still_makes_a_resource_invalid(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(OA, resource_id="c2", modifierExtension=[{"url": 5}]))
    assert not facts.holds("knee_arthritis") and facts.skipped[0].startswith("Condition/c2: not valid FHIR R4")


def test_a_broken_read_element_of_a_measurement_is_still_caught(definitions: FactDefinitions) -> None:
    broken = weight(80, "2020-01-01", valueString="eighty")
    facts = facts_of(definitions, patient(), broken)
    assert not facts.holds("bmi")
