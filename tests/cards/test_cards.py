"""Cards carry everything of interface.md section 5 and decision 8, and nothing invalid."""

from __future__ import annotations

import shutil
import uuid
from datetime import date
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from service.cards import EVIDENCE_LISTED, SUMMARY_LIMIT, CardBuilder, format_value, new_uuid
from service.cdshooks.models import Card, CardsResponse
from service.engine.catalogue import load_catalogue
from service.engine.evaluate import Finding, evaluate
from service.fhir.model import Evidence, Fact
from tests.conftest import REPO_ROOT
from tests.engine.builders import catalogue, condition, counting_uuids, patient_facts

BASE = "https://cds.example.org"
EVERYTHING = tuple(name for name in catalogue().facts)
CARDS = CardBuilder(catalogue())


def _findings(*holding: str, **kwargs: object) -> list[Finding]:
    facts = patient_facts(*holding, **kwargs)  # type: ignore[arg-type]
    return [f for service in catalogue().services for f in evaluate(facts, catalogue(), service_id=service)]


def _card(rule_id: str, *holding: str, **kwargs: object) -> Card:
    (finding,) = [f for f in _findings(*holding, **kwargs) if f.rule.id == rule_id]
    return CARDS.card(finding, base_url=BASE)


@pytest.fixture
def all_cards() -> list[Card]:
    """One card per rule: everything holds, then everything but one complaint (for the 'not' rules)."""
    by_rule: dict[str, Finding] = {}
    for left_out in ((), ("back_complaint", "back_pain_after_trauma", "sciatica"), ("knee_complaint",)):
        for finding in _findings(*(name for name in EVERYTHING if name not in left_out)):
            by_rule.setdefault(finding.rule.id, finding)
    return [CARDS.card(finding, base_url=BASE) for finding in by_rule.values()]


def test_every_rule_yields_a_card_when_everything_holds(all_cards: list[Card]) -> None:
    assert {card.source.topic.code for card in all_cards if card.source.topic} == {rule.id for rule in catalogue().rules}


def test_card_shape(all_cards: list[Card]) -> None:
    rules = {rule.id: rule for rule in catalogue().rules}
    for card in all_cards:
        rule = rules[card.source.topic.code]  # type: ignore[union-attr]
        assert card.uuid and card.indicator == rule.indicator
        assert 0 < len(card.summary) <= SUMMARY_LIMIT
        assert card.source.label == catalogue().source_label
        assert card.source.topic is not None
        assert card.source.topic.system == catalogue().topic_system
        assert card.source.topic.display == rule.title
        assert [(r.code, r.system, bool(r.display)) for r in card.overrideReasons or ()] == [
            ("already-addressed", catalogue().override_reason_system, True),
            ("patient-declined", catalogue().override_reason_system, True),
            ("not-relevant", catalogue().override_reason_system, True),
            ("data-incorrect", catalogue().override_reason_system, True),
        ]
        assert [link.url for link in card.links or ()] == [f"{BASE}/rules/{rule.id}"]
        assert all(link.type == "absolute" for link in card.links or ())
        detail = card.detail or ""
        assert "**Why this card**" in detail and "**What the source advises:**" in detail
        assert all(f"\u201c{citation}\u201d" in detail for citation in rule.citations)
        assert f"Rule `{rule.id}` version {rule.version}" in detail
        # decision 8: the detail names at least one resource that made the rule fire
        assert "`Condition/" in detail or "`Observation/" in detail or "`Patient/" in detail
    # the whole response is valid CDS Hooks (strict model, no nulls)
    CardsResponse(cards=all_cards).model_dump(exclude_none=True)


def test_suggestions_are_valid_r4_service_requests(all_cards: list[Card]) -> None:
    with_suggestions = [card for card in all_cards if card.suggestions]
    assert {card.source.topic.code for card in with_suggestions} == {  # type: ignore[union-attr]
        "knee-pain-back-risk", "post-injury-back-pain", "post-injury-knee-pain", "acl-tear-surgical-referral",
        "weight-management", "knee-arthritis-care",
    }
    for card in with_suggestions:
        assert card.selectionBehavior in ("any", "at-most-one")
        for suggestion in card.suggestions or ():
            # Recommended, but for the MRI: the article says only that imaging "may" be recommended.
            assert suggestion.uuid and suggestion.isRecommended is (not suggestion.label.startswith("Order an MRI"))
            (action,) = suggestion.actions or ()
            assert action.type == "create" and action.description
            resource = action.resource or {}
            request = ServiceRequest.model_validate(resource)
            assert request.status == "draft" and request.intent == "proposal"
            assert request.subject.reference == "Patient/p1"
            assert request.code is not None and request.code.text
            for reason in request.reasonReference or ():
                assert reason.reference.split("/")[0] in ("Condition", "Observation")


def _as_fhir_writes_it(resource: dict[str, object]) -> bytes:
    return orjson.dumps(ServiceRequest.model_validate(resource).model_dump(mode="json", by_alias=True, exclude_none=True))


def test_suggested_requests_are_written_as_fhir_resources_dump_themselves(all_cards: list[Card]) -> None:
    # The card writes its ServiceRequests itself, after validating them: byte for byte what the model would dump.
    odd = " Knee  pain\t[left] <b>é</b> " + "x" * 190 + " y"
    overrides = {"knee_complaint": Fact("knee_complaint", True, (Evidence("Condition", "kp", odd, date(2024, 4, 1)),))}
    cards = [*all_cards, _card("knee-pain-back-risk", "knee_complaint", overrides=overrides), _card("knee-pain-back-risk", "knee_complaint", overrides={
        "knee_complaint": Fact("knee_complaint", True, (Evidence("Condition", None, "Knee pain"),))
    })]
    resources = [action.resource or {} for card in cards for suggestion in card.suggestions or () for action in suggestion.actions or ()]
    assert any("reasonReference" in resource for resource in resources) and any("reasonReference" not in resource for resource in resources)
    assert any("coding" in resource["code"] for resource in resources) and any("coding" not in resource["code"] for resource in resources)
    for resource in resources:
        assert orjson.dumps(resource) == _as_fhir_writes_it(resource)


def test_post_injury_back_pain_offers_mri_and_evaluation_with_any() -> None:
    card = _card("post-injury-back-pain", "back_pain_after_trauma", "back_complaint")
    assert card.indicator == "warning"
    assert card.selectionBehavior == "any"
    mri, evaluation = card.suggestions or ()
    mri_request = (mri.actions or ())[0].resource or {}
    assert mri_request["code"]["coding"] == [{"system": "http://snomed.info/sct", "code": "241645008", "display": "MRI of spine"}]
    assert [r["reference"] for r in mri_request["reasonReference"]] == ["Condition/lbp", "Condition/fall"]
    evaluation_request = (evaluation.actions or ())[0].resource or {}
    assert "coding" not in evaluation_request["code"]  # no verified code: text only, never invented
    assert "2024-03-20" in (card.detail or "") and "2024-04-01" in (card.detail or "")  # both dates named


def test_summary_names_the_key_fact() -> None:
    assert _card("risk-factors", "back_complaint", "older_age", "excess_weight", "bmi").summary == (
        "Risk factors for back and knee pain: older age (64), excess weight (BMI 27.9)"
    )
    assert _card("weight-management", "recent_weight_gain", "knee_complaint").summary.startswith("Weight up 6.3 %, knee problem:")
    assert _card("knee-arthritis-care", "knee_arthritis", "knee_complaint", "excess_weight").summary.startswith(
        "Knee arthritis, overweight or obesity diagnosis:"
    )
    assert _card("acl-tear-surgical-referral", "acl_injury").summary.startswith("ACL injury:")


def test_detail_shows_values_dates_and_references() -> None:
    detail = _card("weight-management", "recent_weight_gain", "back_complaint").detail or ""
    assert "Recent weight gain: 85.0 kg, 6.3 % above the lowest weight (80.0 kg) of the 365 days before." in detail
    assert "`Observation/w-new`: Body weight (LOINC 29463-7), 2024-05-01, 85 kg" in detail
    assert "`Condition/lbp`: Low back pain (SNOMED 279039007), 2024-04-01" in detail
    assert "(as of 2024-06-01)" in detail


def test_a_fact_with_many_resources_lists_the_first_five_and_counts_the_rest() -> None:
    """A chart with a knee osteoarthritis Condition for each of twelve visits: the card lists the five
    the fact names first (the newest), says how many more there are, and its suggestions point at
    the five; it used to list all of them (12,000 made a 3 MB answer)."""
    visits = tuple(condition(f"oa-{number}", "Osteoarthritis of knee (SNOMED 239873007)", date(2024, 5, 12 - number)) for number in range(12))
    overrides = {"knee_arthritis": Fact("knee_arthritis", True, visits)}
    card = _card("knee-arthritis-care", "knee_arthritis", "knee_complaint", overrides=overrides)
    detail = card.detail or ""
    listed = [f"Condition/oa-{number}" for number in range(EVIDENCE_LISTED)]
    assert all(f"`{reference}`" in detail for reference in listed) and "`Condition/oa-5`" not in detail
    assert f"  - and {12 - EVIDENCE_LISTED} more, not listed" in detail.splitlines()
    assert card.suggestions
    for suggestion in card.suggestions:
        reasons = [r["reference"] for r in ((suggestion.actions or ())[0].resource or {})["reasonReference"]]
        assert reasons == listed


def test_a_listed_fact_names_its_identifiable_resources_first() -> None:
    """Five newer Conditions without an id (valid R4) and an older one with: listing the first five
    named no `Type/id` in the detail and left the suggestions without a reasonReference."""
    without_id = tuple(Evidence("Condition", None, "Osteoarthritis of knee (SNOMED 239873007)", date(2024, 5, 12 - n)) for n in range(5))
    with_id = condition("oa-old", "Osteoarthritis of knee (SNOMED 239873007)", date(2019, 1, 2))
    overrides = {"knee_arthritis": Fact("knee_arthritis", True, (*without_id, with_id))}
    card = _card("knee-arthritis-care", "knee_arthritis", "knee_complaint", overrides=overrides)
    assert "`Condition/oa-old`" in (card.detail or "")
    assert card.suggestions
    for suggestion in card.suggestions:
        assert ((suggestion.actions or ())[0].resource or {})["reasonReference"][0]["reference"] == "Condition/oa-old"


def test_each_shown_reason_is_one_line_of_the_detail_in_order() -> None:
    # Reasons without placeholders are made into lines once per rule; they must read as the rendered ones do.
    for finding in _findings(*EVERYTHING):
        detail = CARDS.card(finding, base_url=BASE).detail or ""
        why = detail.split("**What the source advises:**")[0]
        reason_lines = [line for line in why.splitlines() if line.startswith("- ")]
        assert len(reason_lines) == len(finding.reasons)
        for line, shown in zip(reason_lines, finding.reasons):
            if not shown.reason.text.placeholders:
                assert line == "- " + " ".join(shown.reason.text.text.split())


def test_summary_stays_under_140_characters_with_long_data() -> None:
    long = "x" * 400
    overrides = {
        "recent_weight_gain": Fact("recent_weight_gain", True, (), {"gain_percent": long, "newest_kg": 1.0, "lowest_kg": 1.0}),
        "excess_weight": Fact("excess_weight", True, (), {"bmi": long}),
    }
    card = _card("weight-management", "back_complaint", "knee_complaint", "bmi", overrides=overrides)
    assert len(card.summary) <= SUMMARY_LIMIT and card.summary.endswith("…")


def test_a_missing_value_reads_unknown_not_a_crash() -> None:
    overrides = {"excess_weight": Fact("excess_weight", True, (), {})}
    card = _card("weight-management", "back_complaint", "bmi", overrides=overrides)
    assert card.summary.startswith("Excess weight (BMI unknown)") or card.summary.startswith("BMI unknown")


def test_patient_data_cannot_inject_markdown_or_html() -> None:
    evil = Evidence("Condition", "lbp", "Back pain [click](https://evil.example) <script>alert(1)</script> **loud**", date(2024, 4, 1))
    overrides = {"back_complaint": Fact("back_complaint", True, (evil,))}
    detail = _card("back-pain-knee-risk", "older_age", overrides=overrides).detail or ""
    assert "[click](" not in detail and "<script>" not in detail and "**loud**" not in detail
    assert "\\[click\\]" in detail and "\\<script\\>" in detail


def test_the_evidence_placeholder_escapes_patient_data_too(tmp_path: Path) -> None:
    """A reason's {evidence} placeholder (rules/README.md) escapes the labels as the evidence lines do."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", rules)
    rule = rules / "rules" / "sciatica-guidance.yaml"
    rule.write_text(rule.read_text().replace('text: "Active sciatica."', 'text: "Active sciatica: {evidence}."'))
    edited = load_catalogue(rules)
    evil = Evidence("Condition", "sci", "Sciatica [click](https://evil.example) <img src=x>", date(2024, 4, 1))
    facts = patient_facts("sciatica", overrides={"sciatica": Fact("sciatica", True, (evil,))})
    (finding,) = [f for f in evaluate(facts, edited, service_id="back-knee-care-guidance") if f.rule.id == "sciatica-guidance"]
    detail = CardBuilder(edited).card(finding, base_url=BASE).detail or ""
    (reason,) = [line for line in detail.splitlines() if line.startswith("- Active sciatica: ")]
    assert reason == "- Active sciatica: Sciatica \\[click\\](https://evil.example) \\<img src=x\\>."

    many = tuple(Evidence("Condition", f"sci-{number}", f"Sciatica {number}", date(2024, 4, 1)) for number in range(7))
    facts = patient_facts("sciatica", overrides={"sciatica": Fact("sciatica", True, many)})
    (finding,) = [f for f in evaluate(facts, edited, service_id="back-knee-care-guidance") if f.rule.id == "sciatica-guidance"]
    detail = CardBuilder(edited).card(finding, base_url=BASE).detail or ""
    assert "- Active sciatica: Sciatica 0; Sciatica 1; Sciatica 2; Sciatica 3; Sciatica 4; and 2 more, not listed." in detail.splitlines()


def test_no_suggestions_without_a_usable_patient_id() -> None:
    for patient_id in (None, "has space", "x" * 65):
        card = _card("knee-pain-back-risk", "knee_complaint", patient_id=patient_id)
        assert card.suggestions is None and card.selectionBehavior is None


def test_uuids_come_from_the_injected_factory() -> None:
    findings = _findings("knee_complaint", "knee_arthritis")
    uuid_factory = counting_uuids()
    cards = [CARDS.card(finding, base_url=BASE + "/", uuid_factory=uuid_factory) for finding in findings]
    uuids = [card.uuid for card in cards] + [s.uuid for card in cards for s in card.suggestions or ()]
    assert len(set(uuids)) == len(uuids)
    assert all(u and u.startswith("00000000-0000-4000-8000-") for u in uuids)
    assert all(link.url.startswith(f"{BASE}/rules/") for card in cards for link in card.links or ())


def test_new_uuid_writes_random_version_4_uuids_as_uuid_does() -> None:
    made = [new_uuid() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_a_bmi_just_under_the_threshold_reads_as_under_it_on_the_card() -> None:
    """Found by a review: BMI 24.96 read "BMI 25.0, below the overweight threshold of 25"."""
    from service.engine.catalogue import load_catalogue
    from service.pipeline import evaluate_service
    from tests.conftest import REPO_ROOT
    from tests.fhir.builders import TODAY, bmi, condition, patient

    resources = [patient(), condition("239873007"), bmi(24.96, "2024-02-23", resource_id="b1")]
    evaluation = evaluate_service(
        resources, catalogue=load_catalogue(REPO_ROOT / "rules"), service_id="back-knee-care-guidance",
        patient_id="p1", today=TODAY, base_url="https://cds.example.org",
    )
    (card,) = [card for card in evaluation.cards if card.source.topic.code == "knee-arthritis-care"]  # type: ignore[union-attr]
    assert "BMI 24.96, below the overweight threshold of 25." in (card.detail or "")
    assert "25.0" not in (card.detail or "")


@pytest.mark.parametrize(
    ("value", "text"),
    [(27.9, "27.9"), (25.0, "25.0"), (24.96, "24.96"), (6.5, "6.5"), (62, "62"), (float("inf"), "inf"), (float("nan"), "nan")],
)
def test_values_show_as_they_were_rounded(value: float, text: str) -> None:
    assert format_value(value) == text


def test_an_evidence_date_says_what_it_is() -> None:
    """"onset 2011-10-03", not a bare date a clinician could read as the day it was charted."""
    onset = Evidence("Condition", "oa", "Osteoarthritis of knee (SNOMED 239873007)", date(2011, 10, 3), dated="onset")
    bare = Evidence("Condition", "kp", "Knee pain", date(2024, 4, 1))  # a fact that does not say which date it used
    partial = Evidence("Condition", "kn", "Knee injury", date(2009, 1, 1), dated="onset", day_shown="2009 (counted as 2009-01-01)")
    overrides = {"knee_complaint": Fact("knee_complaint", True, (onset, bare, partial))}
    lines = (_card("knee-pain-back-risk", "knee_complaint", overrides=overrides).detail or "").splitlines()
    assert "  - `Condition/oa`: Osteoarthritis of knee (SNOMED 239873007), onset 2011-10-03" in lines
    assert "  - `Condition/kp`: Knee pain, 2024-04-01" in lines
    assert "  - `Condition/kn`: Knee injury, onset 2009 (counted as 2009-01-01)" in lines
