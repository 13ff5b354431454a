"""What holds across all rules (clinical-rules.md section 3): order, deceased, suppression, evidence."""

from __future__ import annotations

import pytest

from service.engine.evaluate import UnknownServiceError, evaluate
from tests.engine.builders import catalogue, patient_facts


def test_deceased_patient_gets_no_findings_whatever_holds() -> None:
    facts = patient_facts("back_complaint", "older_age", "sciatica", "back_pain_after_trauma", deceased=True)
    for service in catalogue().services:
        assert evaluate(facts, catalogue(), service_id=service) == []


def test_warnings_come_before_info_then_catalogue_order() -> None:
    facts = patient_facts(
        "knee_complaint", "knee_pain", "recent_knee_injury", "acl_injury", "back_complaint", "back_pain_after_trauma"
    )
    ids = [f.rule.id for f in evaluate(facts, catalogue(), service_id="back-knee-injury-referral")]
    assert ids == ["post-injury-back-pain", "acl-tear-surgical-referral", "post-injury-knee-pain"]


def test_info_rules_follow_catalogue_order() -> None:
    facts = patient_facts("knee_complaint", "knee_arthritis", "excess_weight", "bmi", "sciatica", "back_complaint")
    ids = [f.rule.id for f in evaluate(facts, catalogue(), service_id="back-knee-care-guidance")]
    assert ids == ["weight-management", "sciatica-guidance", "knee-arthritis-care"]


def test_each_rule_fires_at_most_once() -> None:
    everything = tuple(catalogue().facts)
    for service in catalogue().services:
        ids = [f.rule.id for f in evaluate(patient_facts(*everything), catalogue(), service_id=service)]
        assert len(ids) == len(set(ids))


def test_suppressed_rules_are_dropped_and_only_those() -> None:
    facts = patient_facts("knee_complaint", "knee_arthritis", "excess_weight", "bmi")
    service = "back-knee-care-guidance"
    assert [f.rule.id for f in evaluate(facts, catalogue(), service_id=service)] == ["weight-management", "knee-arthritis-care"]
    kept = evaluate(facts, catalogue(), service_id=service, suppressed=frozenset({"weight-management", "risk-factors"}))
    assert [f.rule.id for f in kept] == ["knee-arthritis-care"]


def test_unknown_service_is_an_error_not_silence() -> None:
    with pytest.raises(UnknownServiceError, match="no-such-service"):
        evaluate(patient_facts(), catalogue(), service_id="no-such-service")


def test_finding_carries_the_rule_evidence_and_values() -> None:
    facts = patient_facts("back_complaint", "older_age", "excess_weight", "bmi")
    (finding,) = [f for f in evaluate(facts, catalogue(), service_id="back-knee-risk-factors") if f.rule.id == "risk-factors"]
    assert finding.rule.version == "1.0.2"
    assert finding.supporting == ("back_complaint", "older_age", "excess_weight")
    assert finding.references == ("Condition/lbp", "Patient/p1", "Observation/bmi")
    assert finding.values["older_age"] == {"age": 64}
    assert finding.values["excess_weight"] == {"bmi": 27.9}
    assert finding.today == facts.today and finding.patient_id == "p1"


def test_a_fact_under_not_is_never_evidence() -> None:
    facts = patient_facts("knee_complaint", "older_age")
    (finding,) = [f for f in evaluate(facts, catalogue(), service_id="back-knee-risk-factors") if f.rule.id == "knee-pain-back-risk"]
    assert finding.supporting == ("knee_complaint",)
    assert finding.references == ("Condition/kp",)


def test_reasons_shown_are_those_whose_when_holds() -> None:
    with_bmi = patient_facts("knee_arthritis", "knee_complaint", "excess_weight", "bmi")
    without_bmi = patient_facts("knee_arthritis", "knee_complaint", "excess_weight")
    normal_bmi = patient_facts("knee_arthritis", "knee_complaint", "bmi")

    def shown(facts: object) -> list[str]:
        (finding,) = [f for f in evaluate(facts, catalogue(), service_id="back-knee-care-guidance") if f.rule.id == "knee-arthritis-care"]  # type: ignore[arg-type]
        return [item.reason.text.text for item in finding.reasons]

    assert any("BMI {bmi} ({overweight_bmi} or more)" in text for text in shown(with_bmi))
    assert any("overweight or obesity diagnosis" in text for text in shown(without_bmi))
    assert any("below the overweight threshold" in text for text in shown(normal_bmi))
    assert len(shown(with_bmi)) == len(shown(without_bmi)) == len(shown(normal_bmi)) == 2
