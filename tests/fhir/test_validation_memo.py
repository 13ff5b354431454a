"""ValidationMemo: validation outcomes remembered by resource content, never by id or position."""

from __future__ import annotations

import copy
from typing import Any

from service.fhir import FactDefinitions, PatientFacts, ValidationMemo, compute_facts, validation
from tests.fhir.builders import PATIENT_ID, TODAY, condition, observation, patient, weight

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


def test_resources_differing_only_in_elements_nobody_reads_share_one_validation() -> None:
    memo = ValidationMemo(100)
    plain = condition(OA, resource_id="oa")
    narrated = {**plain, "text": {"status": "generated", "div": "<div>knee</div>"}, "note": [{"text": "seen twice"}]}
    assert memo.why_invalid(plain) is None and memo.why_invalid(narrated) is None
    assert (memo.misses, memo.hits) == (1, 1)


def test_a_difference_in_a_read_element_is_validated_again() -> None:
    memo = ValidationMemo(100)
    good = condition(OA, resource_id="oa")
    extension_broken = {**good, "_onsetDateTime": {"extension": "not a list"}}
    assert memo.why_invalid(good) is None
    assert memo.why_invalid(extension_broken) is not None
    assert memo.misses == 2


def test_made_up_keys_do_not_grow_the_key_decisions_without_limit() -> None:
    memo = ValidationMemo(100)
    for batch in range(3):
        noisy = {**condition(OA, resource_id=f"n{batch}"), **{f"made-up-{batch}-{n}": n for n in range(400)}}
        assert memo.why_invalid(noisy) is None  # unread elements: not validated, whatever they hold
    assert all(len(decisions) <= validation._SEEN_LIMIT for decisions in validation._SEEN_BY_TYPE.values())


def test_a_skip_line_stays_short_whatever_the_resource_sends(definitions: FactDefinitions) -> None:
    """Kept in the memo and stored in the audit record: a 1 MB id (or 1 MB of unknown keys) must not be."""
    huge_id = condition(OA, onset="not a date", resource_id="x" * 1_000_000)
    huge_keys = condition(OA, onset="not a date", resource_id="keys", **{f"k{'y' * 100_000}{n}": n for n in range(10)})
    facts = _facts(definitions, ValidationMemo(100), huge_id, huge_keys)
    assert len(facts.skipped) == 2
    assert facts.skipped[0].startswith("Condition/" + "x" * 63 + "…: not valid FHIR R4")
    assert all(len(line) <= 500 for line in facts.skipped)


def test_a_valid_resource_skipped_for_its_content_gets_a_short_line_too(definitions: FactDefinitions) -> None:
    """Valid FHIR, unusable here: an unknown unit is quoted in the reason, and a client may send 1 MB of it."""
    facts = _facts(definitions, ValidationMemo(100), observation("29463-7", 70, "x" * 1_000_000, when=TODAY.isoformat()))
    assert len(facts.skipped) == 1 and len(facts.skipped[0]) <= 500


def test_a_worker_thread_reads_the_memo_and_hands_back_what_it_learnt() -> None:
    """A large call's facts are computed in a worker thread: it reads the memo without changing it
    (two threads evicting from one memo ended in KeyErrors), and the loop's thread adds what it
    learnt afterwards."""
    memo = ValidationMemo(100)
    known, new = condition(OA, resource_id="known"), condition(OA, onset="yesterday", resource_id="new")
    assert memo.why_invalid(known) is None
    view = memo.for_worker_thread()
    assert view.why_invalid(copy.deepcopy(known)) is None  # from the memo
    why = view.why_invalid(new)
    assert why is not None and why.startswith("Condition/new: not valid FHIR R4")
    assert view.why_invalid(copy.deepcopy(new)) == why  # from what it learnt
    assert (view.hits, view.misses, len(memo)) == (2, 1, 1)
    memo.remember(view)
    assert (memo.hits, memo.misses, len(memo)) == (2, 2, 2)
    assert memo.why_invalid(copy.deepcopy(new)) == why and memo.hits == 3


def test_what_a_worker_thread_learnt_makes_room_oldest_out_first_and_keeps_at_most_the_size() -> None:
    memo = ValidationMemo(3)
    for number in range(3):
        memo.why_invalid(condition(OA, resource_id=f"old-{number}"))
    view = memo.for_worker_thread()
    for number in range(5):
        view.why_invalid(condition(OA, resource_id=f"new-{number}"))
    memo.remember(view)
    assert len(memo) == 3
    hits = memo.hits
    for number in (2, 3, 4):  # the last three it learnt
        memo.why_invalid(condition(OA, resource_id=f"new-{number}"))
    assert memo.hits == hits + 3
    memo.why_invalid(condition(OA, resource_id="old-2"))
    assert memo.hits == hits + 3  # evicted
