"""Every rule of clinical-rules.md section 2: where it fires, and where it must not.

Facts are built directly (tests/engine/builders.py), so each case states exactly which facts
hold; the FHIR-to-facts part is tested in tests/fhir and end to end in tests/engine/test_fixtures_e2e.py.
"""

from __future__ import annotations

import pytest

from service.engine.evaluate import evaluate
from tests.engine.builders import catalogue, patient_facts

RISK_FACTORS = ("older_age", "injury_history", "excess_weight", "family_history")

# (rule id, facts that hold, fires?)
CASES: list[tuple[str, tuple[str, ...], bool]] = [
    # risk-factors: (back or knee complaint and n >= 1) or n >= 2
    *[("risk-factors", ("back_complaint", factor), True) for factor in RISK_FACTORS],
    *[("risk-factors", ("knee_complaint", factor), True) for factor in RISK_FACTORS],
    ("risk-factors", ("older_age", "excess_weight"), True),
    ("risk-factors", ("injury_history", "family_history"), True),
    *[("risk-factors", (factor,), False) for factor in RISK_FACTORS],
    ("risk-factors", ("back_complaint", "knee_complaint"), False),
    ("risk-factors", ("back_complaint", "recent_weight_gain", "bmi"), False),  # not risk factors
    ("risk-factors", (), False),
    # back-pain-knee-risk: back complaint, older age, no knee complaint
    ("back-pain-knee-risk", ("back_complaint", "older_age"), True),
    ("back-pain-knee-risk", ("back_complaint", "older_age", "sciatica"), True),
    ("back-pain-knee-risk", ("back_complaint", "older_age", "knee_complaint"), False),
    ("back-pain-knee-risk", ("back_complaint",), False),
    ("back-pain-knee-risk", ("older_age", "sciatica"), False),  # sciatica alone is not the back-complaint fact
    ("back-pain-knee-risk", ("older_age",), False),
    # knee-pain-back-risk: knee complaint, no back complaint
    ("knee-pain-back-risk", ("knee_complaint",), True),
    ("knee-pain-back-risk", ("knee_complaint", "knee_arthritis", "older_age"), True),
    ("knee-pain-back-risk", ("knee_complaint", "back_complaint"), False),
    ("knee-pain-back-risk", ("knee_arthritis",), False),  # only through knee_complaint
    ("knee-pain-back-risk", (), False),
    # post-injury-back-pain: back pain after trauma, or a recent back injury
    ("post-injury-back-pain", ("back_pain_after_trauma", "back_complaint"), True),
    ("post-injury-back-pain", ("recent_back_injury",), True),
    ("post-injury-back-pain", ("back_complaint", "injury_history"), False),
    ("post-injury-back-pain", ("back_complaint", "older_age"), False),
    # post-injury-knee-pain: a recent knee injury, or knee pain after a knee injury or fall
    ("post-injury-knee-pain", ("recent_knee_injury", "knee_complaint"), True),
    ("post-injury-knee-pain", ("knee_pain_after_knee_injury", "knee_pain", "knee_complaint"), True),
    ("post-injury-knee-pain", ("knee_arthritis", "knee_complaint", "injury_history"), False),
    ("post-injury-knee-pain", ("knee_pain", "knee_complaint", "injury_history"), False),
    # acl-tear-surgical-referral: an active ACL injury
    ("acl-tear-surgical-referral", ("acl_injury", "knee_complaint"), True),
    ("acl-tear-surgical-referral", ("recent_knee_injury", "knee_complaint", "injury_history"), False),
    # weight-management: (excess weight or weight gain) and (back or knee complaint)
    ("weight-management", ("excess_weight", "bmi", "back_complaint"), True),
    ("weight-management", ("excess_weight", "knee_complaint"), True),
    ("weight-management", ("recent_weight_gain", "back_complaint"), True),
    ("weight-management", ("recent_weight_gain", "knee_complaint"), True),
    ("weight-management", ("excess_weight", "bmi"), False),
    ("weight-management", ("recent_weight_gain", "older_age"), False),
    ("weight-management", ("bmi", "back_complaint", "knee_complaint"), False),  # a normal BMI
    # sciatica-guidance
    ("sciatica-guidance", ("sciatica", "back_complaint"), True),
    ("sciatica-guidance", ("back_complaint",), False),
    # knee-arthritis-care
    ("knee-arthritis-care", ("knee_arthritis", "knee_complaint"), True),
    ("knee-arthritis-care", ("knee_complaint", "knee_pain"), False),
]


def _fired(holding: tuple[str, ...]) -> set[str]:
    facts = patient_facts(*holding)
    return {finding.rule.id for service in catalogue().services for finding in evaluate(facts, catalogue(), service_id=service)}


@pytest.mark.parametrize(("rule_id", "holding", "fires"), CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_rule_fires_exactly_when_its_condition_holds(rule_id: str, holding: tuple[str, ...], fires: bool) -> None:
    assert (rule_id in _fired(holding)) is fires


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    for rule in catalogue().rules:
        outcomes = {fires for rule_id, _, fires in CASES if rule_id == rule.id}
        assert outcomes == {True, False}, f"rule '{rule.id}' lacks a case where it fires or where it must not"


def test_a_patient_with_no_facts_gets_nothing() -> None:
    assert _fired(()) == set()


def test_each_rule_is_evaluated_only_for_its_own_service() -> None:
    facts = patient_facts("knee_complaint", "knee_arthritis", "excess_weight", "bmi", "older_age")
    for service in catalogue().services:
        for finding in evaluate(facts, catalogue(), service_id=service):
            assert finding.rule.service == service
