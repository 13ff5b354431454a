"""A service computes only the facts its rules read, and answers exactly as with every fact computed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from service.engine.evaluate import evaluate
from service.fhir import compute_facts
from service.pipeline import Evaluation, evaluate_facts, evaluate_service
from tests.conftest import SHARED_FIXTURES
from tests.engine.builders import catalogue, counting_uuids, patient_facts
from tests.fhir.builders import PATIENT_ID, TODAY, bmi, condition, family_history, patient, weight

FIXTURE_FILES = sorted(SHARED_FIXTURES.glob("*/*.json"))
# Dates the fixture patients' cards differ on (tests/engine/test_fixtures_e2e.py uses the first).
AS_OF = (date(2020, 6, 1), date(2021, 6, 1))
# Made to fire rules of all three services, with a BMI reading that is not valid FHIR.
MADE_UP = [
    patient(birth="1960-03-01"),
    condition("444470001", onset="2024-01-10"),  # ACL injury: injury referral
    condition("279039007", onset="2024-02-01"),  # low back pain after it
    condition("239873007"),  # knee osteoarthritis: care guidance
    bmi(31.0, "2024-03-01"),
    weight(80.0, "2024-01-01"),
    weight(90.0, "2024-05-01"),
    bmi("thirty", "2024-04-01", resource_id="bad-bmi"),  # type: ignore[arg-type]
    family_history("239873007"),
]


def _with_every_fact(data: list[Any], service_id: str, patient_id: str | None, today: date) -> Evaluation:
    rules = catalogue()
    facts = compute_facts(data, patient_id=patient_id, today=today, definitions=rules.fact_definitions)
    return evaluate_facts(facts, catalogue=rules, service_id=service_id, base_url="https://cds.test", uuid_factory=counting_uuids())


def _compare(data: list[Any], patient_id: str | None, today: date) -> int:
    """Cards of each service from its own facts and from every fact: equal. Returns the cards seen."""
    rules = catalogue()
    cards = 0
    for service_id in rules.services:
        own = evaluate_service(
            data, catalogue=rules, service_id=service_id, patient_id=patient_id, today=today,
            base_url="https://cds.test", uuid_factory=counting_uuids(),
        )
        every = _with_every_fact(data, service_id, patient_id, today)
        assert [c.model_dump() for c in own.cards] == [c.model_dump() for c in every.cards], service_id
        assert own.issued == every.issued, service_id
        assert set(own.skipped) <= set(every.skipped), service_id
        cards += len(own.cards)
    return cards


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem[:40]}")
def test_every_fixture_gets_the_cards_of_every_fact_computed(path: Path) -> None:
    for today in AS_OF:
        _compare([_load(path)], None, today)


def test_the_fixtures_fire_cards_so_the_comparison_shows_something() -> None:
    assert sum(_compare([_load(path)], None, today) for path in FIXTURE_FILES for today in AS_OF) >= 10


def test_made_up_chart_fires_every_service_and_gets_the_same_cards() -> None:
    rules = catalogue()
    for service_id in rules.services:
        fired = evaluate_service(MADE_UP, catalogue=rules, service_id=service_id, patient_id=PATIENT_ID, today=TODAY, base_url="https://x")
        assert fired.cards, f"{service_id} must fire, or the comparison shows little"
    _compare(MADE_UP, PATIENT_ID, TODAY)


def test_a_service_computes_the_facts_its_rules_read_and_what_they_are_computed_from() -> None:
    rules = catalogue()
    for service_id in rules.services:
        read = {name for rule in rules.rules_for(service_id) for name in rule.fact_names()}
        assert rules.facts_read_by(service_id) == read
        definitions = rules.fact_definitions_for(service_id)
        computed = set(definitions.facts)
        assert read <= computed
        # excess_weight is computed from the bmi fact, the only fact another is computed from.
        assert computed - read <= ({"bmi"} if "excess_weight" in read else set())
    assert rules.facts_read_by("back-knee-injury-referral").isdisjoint({"bmi", "excess_weight", "recent_weight_gain"})
    # The injury referral reads no measurement, so it reads no Observation at all.
    referral = rules.fact_definitions_for("back-knee-injury-referral")
    assert referral is not None and not referral.observations
    assert rules.fact_definitions_for("no-such-service") is rules.fact_definitions


def test_data_no_fact_of_a_service_reads_is_not_validated_for_it() -> None:
    rules = catalogue()
    skipped = {
        service_id: evaluate_service(
            MADE_UP, catalogue=rules, service_id=service_id, patient_id=PATIENT_ID, today=TODAY, base_url="https://x"
        ).skipped
        for service_id in rules.services
    }
    assert any(line.startswith("Observation/bad-bmi") for line in skipped["back-knee-risk-factors"])
    assert any(line.startswith("Observation/bad-bmi") for line in skipped["back-knee-care-guidance"])
    assert skipped["back-knee-injury-referral"] == ()


def test_evaluating_facts_that_lack_one_the_service_reads_is_an_error_not_silence() -> None:
    every = patient_facts("back_complaint", "older_age")
    without = type(every)(
        patient_id=every.patient_id, today=every.today, deceased=every.deceased,
        facts={name: fact for name, fact in every.facts.items() if name != "older_age"},
    )
    with pytest.raises(ValueError, match="older_age"):
        evaluate(without, catalogue(), service_id="back-knee-risk-factors")
    # A fact none of the service's rules reads may be missing.
    assert evaluate(without, catalogue(), service_id="back-knee-injury-referral") == []
