"""Structurally broken FHIR never raises out of compute_facts: it is skipped and reported."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from service.fhir import FactDefinitions, compute_facts
from tests.conftest import SHARED_FIXTURES
from tests.fhir.builders import ICD, TODAY, bmi, condition, facts_of, family_history, patient, weight

OA = "239873007"


def test_an_invalid_condition_is_skipped_with_its_reason(definitions: FactDefinitions) -> None:
    broken = condition(OA, onset="yesterday", resource_id="bad")
    facts = facts_of(definitions, broken, condition("M54.50", ICD))
    assert not facts.holds("knee_arthritis") and facts.holds("back_complaint")
    (reason,) = facts.skipped
    assert reason.startswith("Condition/bad: not valid FHIR R4: onsetDateTime")


def test_an_invalid_patient_is_skipped_without_naming_the_patient(definitions: FactDefinitions) -> None:
    person = patient(birth="1970-13-45", name=[{"family": "Secretname"}], deceasedBoolean=True)
    facts = facts_of(definitions, person)
    assert not facts.holds("older_age")
    assert facts.deceased  # clinical-rules.md 1: a deceased patient gets no card at all, valid Patient or not
    (reason,) = facts.skipped
    assert reason.startswith("Patient: not valid FHIR R4: birthDate")
    assert "p1" not in reason and "Secretname" not in reason and "1970-13-45" not in reason


def test_invalid_family_history_is_skipped(definitions: FactDefinitions) -> None:
    member = family_history(OA, resource_id="fmh")
    member["date"] = "last spring"
    facts = facts_of(definitions, member)
    assert not facts.holds("family_history")
    assert facts.skipped[0].startswith("FamilyMemberHistory/fmh: not valid FHIR R4: date")


def test_an_unknown_element_makes_a_resource_invalid(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(OA, resource_id="x", onsetBoolean=True))
    assert not facts.holds("knee_arthritis") and facts.skipped[0].startswith("Condition/x: ")


def test_a_non_numeric_value_is_skipped(definitions: FactDefinitions) -> None:
    text_value = bmi(27.0, "2024-05-01", resource_id="t")
    text_value["valueQuantity"]["value"] = "twenty-seven"
    facts = facts_of(definitions, text_value)
    assert not facts.holds("bmi")
    assert facts.skipped[0].startswith("Observation/t: not valid FHIR R4: valueQuantity.value")


def test_a_zero_weight_is_not_a_measurement(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(0, "2023-05-01", resource_id="zero"), weight(80, "2024-05-01"))
    assert not facts.holds("recent_weight_gain")
    assert facts.skipped == ("Observation/zero: value 0 is not a measurement (must be positive)",)


@pytest.mark.parametrize("value", [-3, -1.5, -0.0, 0.0])
def test_a_value_not_above_zero_is_not_a_measurement(definitions: FactDefinitions, value: float) -> None:
    # Decided on the JSON number; its Decimal is made only when a fact compares or shows it.
    facts = facts_of(definitions, weight(value, "2023-05-01", resource_id="low"), weight(80, "2024-05-01"))
    assert facts.skipped == (f"Observation/low: value {value} is not a measurement (must be positive)",)


def test_a_tiny_positive_value_is_a_measurement(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(5e-324, "2023-05-01", resource_id="tiny"), weight(80, "2024-05-01"))
    assert facts.skipped == ()


def test_timezone_less_datetimes_are_tolerated(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        condition("S83.511A", ICD, onset="2024-05-01T10:00:00", recordedDate="2024-05-01T10:00"),
        bmi(27.0, "2024-05-01T10:00:00"),
    )
    assert facts.skipped == ()
    assert facts.holds("recent_knee_injury") and facts.holds("excess_weight")


@pytest.mark.parametrize(
    "data",
    [
        [],
        [None, 3, "text", [], {}],
        [{"resourceType": "Bundle", "entry": "nope"}],
        [{"resourceType": "Bundle", "entry": [None, {"resource": None}, {"resource": []}]}],
        [{"resourceType": "Condition", "code": "239873007"}],
        [{"resourceType": "Condition", "code": {"coding": {"code": OA}}}],
        [{"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct", "code": OA}]}, "subject": "p1"}],
        [{"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]}, "valueQuantity": []}],
        [{"resourceType": "Patient", "id": "p1", "birthDate": 1970, "deceasedBoolean": "yes"}],
        [{"resourceType": "FamilyMemberHistory", "patient": 1, "condition": [{"code": {"coding": [{"system": 1}]}}]}],
    ],
)
def test_malformed_json_shapes_do_not_raise(definitions: FactDefinitions, data: list[Any]) -> None:
    facts = compute_facts(data, patient_id="p1", today=TODAY, definitions=definitions)
    assert set(facts.facts) == set(definitions.facts)
    assert not any(fact.holds for fact in facts.facts.values())


# --- mutation fuzzing over real resources -----------------------------------------------------

_ODD_VALUES: list[Any] = [None, True, 0, -1, 1.5, 1e308, "", "x", "2020", "2020-13-01", "2020-02-30T10:00:00",
                          [], {}, [1], {"a": 1}, "urn:uuid:x", "Patient/", "/", "#c"]  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _relevant_resources() -> list[dict[str, Any]]:
    path = SHARED_FIXTURES / "synthea-r4-bundles" / "Chauncey_Johnston_f4673866-81fb-411a-8486-0c27f2a5b480.json"
    if not path.exists():  # pragma: no cover
        pytest.skip(f"{path} not found")
    bundle = json.loads(path.read_text(encoding="utf-8"))
    wanted = {"Patient", "Condition"}
    resources = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] in wanted]
    resources += [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["coding"][0]["code"] in ("29463-7", "8302-2", "39156-5")
    ][-6:]
    resources.append(family_history(OA, patient_ref="urn:uuid:2a3d4d46-512f-480f-8eb9-5a11ef3b2176"))
    return resources


def test_mutated_real_resources_never_raise(definitions: FactDefinitions) -> None:
    """Seeded: 400 resources with one to three fields replaced by odd JSON values."""
    resources = _relevant_resources()
    rng = random.Random(20240615)
    for _ in range(400):
        mutated = copy.deepcopy(rng.choice(resources))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(list(_paths(mutated)))
            node = mutated
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = copy.deepcopy(rng.choice(_ODD_VALUES))
        data = [mutated, *rng.sample(resources, 3)]
        patient_id = rng.choice([None, "2a3d4d46-512f-480f-8eb9-5a11ef3b2176", "other"])
        facts = compute_facts(data, patient_id=patient_id, today=TODAY, definitions=definitions)
        assert set(facts.facts) == set(definitions.facts)


def test_a_datetime_outside_the_years_python_counts_is_no_date(definitions: FactDefinitions) -> None:
    # 0001-01-01T00:30+01:00 is in year 0 in UTC: once an OverflowError out of the facts (a 500).
    early = weight(80, "2024-05-01", resource_id="early")
    early["effectiveDateTime"] = "0001-01-01T00:30:00+01:00"
    facts = facts_of(definitions, early, weight(90, "2024-05-01"))
    assert not facts.holds("recent_weight_gain")
    assert any(line.startswith("Observation/early: no effective date") for line in facts.skipped)
