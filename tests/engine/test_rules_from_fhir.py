"""Every rule from small FHIR resources, through the whole pipeline, on a fixed date (2024-06-15).

tests/engine/test_rule_conditions.py pins each rule's logic over facts; this file shows the same
rules firing, and staying quiet, on the kind of FHIR data an EHR sends.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.pipeline import evaluate_service
from tests.engine.builders import catalogue
from tests.fhir.builders import ICD, PATIENT_ID, TODAY, bmi, condition, family_history, patient, weight

OLDER = patient(birth="1960-03-01")  # 64 on 2024-06-15
YOUNGER = patient(birth="1990-03-01")  # 34

LOW_BACK_PAIN = ("279039007",)
KNEE_PAIN = ("30989003",)

Resources = list[dict[str, Any]]

# (rule id, resources, fires?, what the case shows)
CASES: list[tuple[str, Resources, bool, str]] = [
    ("risk-factors", [YOUNGER, condition(*LOW_BACK_PAIN), bmi(27.0, "2024-03-01")], True, "back pain and excess weight"),
    ("risk-factors", [OLDER, family_history("239873007")], True, "older age and family history, no complaint"),
    ("risk-factors", [YOUNGER, bmi(27.0, "2024-03-01")], False, "one risk factor, no complaint"),
    ("risk-factors", [YOUNGER, condition(*KNEE_PAIN), bmi(22.0, "2024-03-01")], False, "a complaint, no risk factor"),
    ("back-pain-knee-risk", [OLDER, condition("M54.50", ICD)], True, "older, low back pain"),
    ("back-pain-knee-risk", [OLDER, condition("M54.50", ICD), condition("M25.561", ICD)], False, "knee pain too"),
    ("back-pain-knee-risk", [YOUNGER, condition("M54.50", ICD)], False, "not older"),
    ("back-pain-knee-risk", [OLDER, condition("M54.50", ICD, verification="refuted")], False, "refuted back pain"),
    ("knee-pain-back-risk", [YOUNGER, condition(*KNEE_PAIN)], True, "knee pain"),
    ("knee-pain-back-risk", [YOUNGER, condition(*KNEE_PAIN), condition(*LOW_BACK_PAIN)], False, "back pain too"),
    (
        "knee-pain-back-risk",
        [YOUNGER, condition(*KNEE_PAIN, clinical="resolved", abatementDateTime="2024-02-01")],
        False,
        "knee pain abated",
    ),
    (
        "post-injury-back-pain",
        [YOUNGER, condition(*LOW_BACK_PAIN, onset="2024-05-01"), condition("W19.XXXA", ICD, onset="2024-04-20", clinical="resolved")],
        True,
        "back pain 11 days after a fall",
    ),
    (
        "post-injury-back-pain",
        [YOUNGER, condition(*LOW_BACK_PAIN, onset="2024-05-01"), condition("W19.XXXA", ICD, onset="2023-01-01", clinical="resolved")],
        False,
        "the fall was long before",
    ),
    ("post-injury-back-pain", [YOUNGER, condition("S39.012A", ICD, onset="2024-05-20")], True, "recent lumbar strain"),
    ("post-injury-back-pain", [YOUNGER, condition("S39.012A", ICD, onset="2023-01-20")], False, "old lumbar strain"),
    ("post-injury-knee-pain", [YOUNGER, condition("444448004", onset="2024-05-01")], True, "recent MCL injury"),
    (
        "post-injury-knee-pain",
        [YOUNGER, condition(*KNEE_PAIN, onset="2024-05-10"), condition("444448004", onset="2024-04-20", clinical="resolved")],
        True,
        "knee pain after a knee injury",
    ),
    (
        "post-injury-knee-pain",
        [YOUNGER, condition("M17.11", ICD, onset="2024-05-10"), condition("444448004", onset="2024-04-20", clinical="resolved")],
        False,
        "knee arthritis after an injury does not trigger it",
    ),
    ("post-injury-knee-pain", [YOUNGER, condition("444448004", onset="2023-01-01")], False, "old knee injury"),
    ("acl-tear-surgical-referral", [YOUNGER, condition("S83.511A", ICD, onset="2019-05-01")], True, "active ACL sprain"),
    (
        "acl-tear-surgical-referral",
        [YOUNGER, condition("444470001", onset="2024-05-01", clinical="resolved", abatementDateTime="2024-06-01")],
        False,
        "resolved ACL injury",
    ),
    ("weight-management", [YOUNGER, condition(*KNEE_PAIN), bmi(31.0, "2024-03-01")], True, "knee pain and obesity"),
    (
        "weight-management",
        [YOUNGER, condition(*LOW_BACK_PAIN), weight(80, "2024-01-01"), weight(85, "2024-06-01")],
        True,
        "back pain and 6.25 % weight gain",
    ),
    (
        "weight-management",
        [YOUNGER, condition(*KNEE_PAIN), bmi(22.0, "2024-03-01"), condition("162864005", onset="2015-01-01")],
        False,
        "a recent normal BMI decides over an old obesity diagnosis",
    ),
    ("weight-management", [YOUNGER, bmi(31.0, "2024-03-01")], False, "obesity without a complaint"),
    ("sciatica-guidance", [YOUNGER, condition("M54.41", ICD)], True, "lumbago with sciatica"),
    ("sciatica-guidance", [YOUNGER, condition("M54.41", ICD, verification="entered-in-error")], False, "entered in error"),
    ("knee-arthritis-care", [YOUNGER, condition("M17.11", ICD)], True, "knee osteoarthritis"),
    ("knee-arthritis-care", [YOUNGER, condition("239872002")], False, "hip osteoarthritis"),
]


def _fired(resources: Resources) -> list[str]:
    fired: list[str] = []
    for service_id in catalogue().services:
        evaluation = evaluate_service(
            resources, catalogue=catalogue(), service_id=service_id, patient_id=PATIENT_ID, today=TODAY, base_url="https://cds.test"
        )
        assert evaluation.skipped == ()
        fired.extend(issued.rule_id for issued in evaluation.issued)
    return fired


@pytest.mark.parametrize(("rule_id", "resources", "fires", "shows"), CASES, ids=[f"{c[0]}: {c[3]}" for c in CASES])
def test_rule_from_fhir(rule_id: str, resources: Resources, fires: bool, shows: str) -> None:
    assert (rule_id in _fired(resources)) is fires, shows


def test_every_rule_fires_and_stays_quiet_from_fhir() -> None:
    for rule in catalogue().rules:
        assert {fires for rule_id, _, fires, _ in CASES if rule_id == rule.id} == {True, False}, rule.id


def test_deceased_patient_gets_no_card_from_fhir() -> None:
    dead = patient(birth="1960-03-01", deceasedDateTime="2024-01-01")
    assert _fired([dead, condition("M54.41", ICD), condition("M17.11", ICD), bmi(31.0, "2023-12-01")]) == []


def test_computed_facts_carry_only_the_values_templates_may_name() -> None:
    """catalogue.VALUES_BY_KIND (what card templates may name) matches what compute_facts produces."""
    from service.fhir import compute_facts

    data = [OLDER, condition(*LOW_BACK_PAIN, onset="2024-05-01"), condition("W19.XXXA", ICD, onset="2024-04-20"),
            condition("S39.012A", ICD, onset="2024-05-20"), condition("444448004", onset="2024-05-01"),
            condition(*KNEE_PAIN, onset="2024-05-10"), weight(80, "2024-01-01"), weight(85, "2024-06-01"),
            bmi(31.0, "2024-03-01")]
    facts = compute_facts(data, patient_id=PATIENT_ID, today=TODAY, definitions=catalogue().fact_definitions)
    with_values = set()
    for name, fact in facts.facts.items():
        declared = set(catalogue().facts[name].values)
        assert set(fact.values) <= declared, f"{name} carries {set(fact.values) - declared}, undeclared for templates"
        if fact.values:
            with_values.add(name)
    assert {"older_age", "bmi", "excess_weight", "recent_weight_gain", "back_pain_after_trauma", "recent_back_injury",
            "recent_knee_injury", "knee_pain_after_knee_injury"} <= with_values
