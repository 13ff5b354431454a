"""The route's two steps (patient_facts, then evaluate_facts) give what evaluate_service gives."""

from __future__ import annotations

from service.pipeline import evaluate_facts, evaluate_service, patient_facts
from tests.engine.builders import catalogue, counting_uuids
from tests.fhir.builders import PATIENT_ID, TODAY, bmi, condition, family_history, patient

RESOURCES = [
    patient(birth="1960-03-01"),
    condition("279039007"),
    condition("30989003"),
    bmi(31.0, "2024-03-01"),
    family_history("239873007"),
]


def test_two_steps_equal_the_whole_path_for_every_service() -> None:
    rules = catalogue()
    for service_id in rules.services:
        for suppressed in (frozenset(), frozenset({"risk-factors", "weight-management"})):
            whole = evaluate_service(
                RESOURCES, catalogue=rules, service_id=service_id, patient_id=PATIENT_ID, today=TODAY,
                suppressed=suppressed, base_url="https://cds.test", uuid_factory=counting_uuids(),
            )
            facts = patient_facts(RESOURCES, catalogue=rules, service_id=service_id, patient_id=PATIENT_ID, today=TODAY)
            steps = evaluate_facts(
                facts, catalogue=rules, service_id=service_id, suppressed=suppressed,
                base_url="https://cds.test", uuid_factory=counting_uuids(),
            )
            assert [c.model_dump() for c in steps.cards] == [c.model_dump() for c in whole.cards]
            assert steps.issued == whole.issued and steps.skipped == whole.skipped
    fired = evaluate_service(
        RESOURCES, catalogue=rules, service_id="back-knee-risk-factors", patient_id=PATIENT_ID, today=TODAY,
        base_url="https://cds.test",
    )
    assert fired.cards, "the resources must make at least one card, or the comparison shows little"
