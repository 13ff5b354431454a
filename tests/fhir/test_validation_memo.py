"""ValidationMemo: validation outcomes remembered by resource content, never by id or position."""

from __future__ import annotations

import copy
from typing import Any

from service.fhir import FactDefinitions, PatientFacts, ValidationMemo, compute_facts
from tests.fhir.builders import PATIENT_ID, TODAY, condition, patient, weight

OA = "239873007"


def _facts(definitions: FactDefinitions, memo: ValidationMemo | None, *resources: dict[str, Any]) -> PatientFacts:
    data = [patient(), *resources]
    return compute_facts(data, patient_id=PATIENT_ID, today=TODAY, definitions=definitions, memo=memo)


def test_a_repeated_call_reuses_outcomes_and_answers_the_same(definitions: FactDefinitions) -> None:
    memo = ValidationMemo(100)
    resources = [condition(OA, resource_id="oa"), condition(OA, onset="yesterday", resource_id="bad")]
    first = _facts(definitions, memo, *copy.deepcopy(resources))
    validated = memo.misses
    second = _facts(definitions, memo, *copy.deepcopy(resources))  # new objects, same content
    assert second == first == _facts(definitions, None, *copy.deepcopy(resources))
    assert memo.misses == validated and memo.hits == validated
    assert first.holds("knee_arthritis")
    assert [line.split(":")[0] for line in second.skipped] == ["Condition/bad"]


def test_changed_content_under_the_same_id_is_validated_again(definitions: FactDefinitions) -> None:
    memo = ValidationMemo(100)
    good = condition(OA, resource_id="oa")
    assert _facts(definitions, memo, good).holds("knee_arthritis")
    broken = copy.deepcopy(good)
    broken["onsetDateTime"] = "last spring"
    facts = _facts(definitions, memo, broken)
    assert not facts.holds("knee_arthritis")
    assert facts.skipped[0].startswith("Condition/oa: not valid FHIR R4: onsetDateTime")


def test_the_memo_keeps_at_most_its_size_oldest_out_first() -> None:
    memo = ValidationMemo(2)
    first, second, third = (weight(80 + n, f"2024-0{n + 1}-01", resource_id=f"w{n}") for n in range(3))
    for item in (first, second, third):
        assert memo.why_invalid(item) is None
    assert len(memo) == 2 and memo.misses == 3
    memo.why_invalid(third)
    assert memo.hits == 1
    memo.why_invalid(first)  # the oldest went out
    assert memo.misses == 4


def test_size_zero_remembers_nothing(definitions: FactDefinitions) -> None:
    memo = ValidationMemo(0)
    _facts(definitions, memo, condition(OA))
    _facts(definitions, memo, condition(OA))
    assert len(memo) == 0 and memo.hits == 0
