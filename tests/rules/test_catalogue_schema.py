"""A broken catalogue fails at load with a message naming the file, the rule and the field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from service.catalogue_error import CatalogueError
from service.engine.catalogue import load_catalogue
from tests.conftest import REPO_ROOT

RULE = "rules/weight-management.yaml"
# "It" is physical therapy, in the article's sentence before this one.
RANGE_OF_MOTION = "It can also help to restore the knee’s range of motion and improve walking issues."


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", target)
    return target


def _edit_yaml(path: Path, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _error(directory: Path) -> str:
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(directory)
    return str(caught.value)


def test_shipped_catalogue_loads() -> None:
    catalogue = load_catalogue(REPO_ROOT / "rules")
    assert [rule.id for rule in catalogue.rules] == [
        "risk-factors",
        "back-pain-knee-risk",
        "knee-pain-back-risk",
        "post-injury-back-pain",
        "post-injury-knee-pain",
        "acl-tear-surgical-referral",
        "weight-management",
        "sciatica-guidance",
        "knee-arthritis-care",
    ]
    assert catalogue.version == "1.0.4"
    assert catalogue.suppress_days == {rule.id: 90 for rule in catalogue.rules}
    assert catalogue.suppressing_reasons == frozenset({"already-addressed", "patient-declined"})
    assert {r.code for r in catalogue.override_reasons} == {"already-addressed", "patient-declined", "not-relevant", "data-incorrect"}
    assert all(r.display for r in catalogue.override_reasons)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(suppress_day=90), "field 'suppress_day': unknown field"),
        (lambda d: d.update(version="1.0"), "field 'version'"),
        (lambda d: d.update(indicator="urgent"), "field 'indicator'"),
        (lambda d: d.update(suppress_days="ninety"), "field 'suppress_days'"),
        (lambda d: d.update(suppress_days=True), "field 'suppress_days'"),  # YAML's yes/on/true
        (lambda d: d.update(service="back-knee-nowhere"), "field 'service': unknown service 'back-knee-nowhere'"),
        (lambda d: d.update(id="weight-mgmt"), "rule 'weight-mgmt': field 'id': must match the file name"),
        (lambda d: d["condition"]["all"][0].update(any=["excess_weight", "heavy"]), "field 'condition.all[0].any[1]': unknown fact 'heavy'"),
        (lambda d: d.update(condition={"count": {"of": ["older_age"], "at_least": 2}}), "field 'condition.count.at_least'"),
        (lambda d: d.update(condition={"count": {"of": ["older_age", "excess_weight"], "at_least": 0}}), "field 'condition.count.at_least': must be a whole number from 1 to 2; got 0"),
        (lambda d: d.update(condition={"count": {"of": ["older_age", "excess_weight"], "at_least": True}}), "field 'condition.count.at_least': must be a whole number from 1 to 2; got"),
        (lambda d: d.update(condition={"count": {"of": ["older_age", "older_age", "excess_weight"], "at_least": 2}}), "field 'condition.count.of': names a fact twice"),
        (lambda d: d.update(condition={"all": ["older_age"], "not": "excess_weight"}), "field 'condition': must be a fact name or a mapping with exactly one"),
        (lambda d: d.update(condition={"xor": ["older_age"]}), "field 'condition': unknown operator 'xor'"),
        (lambda d: d.update(condition={"all": []}), "field 'condition.all': must be a non-empty list"),
        (lambda d: d["card"].update(summary="BMI {bmi_value}: lose weight"), "field 'card.summary': unknown placeholder {bmi_value}"),
        (lambda d: d["card"].update(summary="{reasons}: " + "weight loss helps knee and back pain " * 4), "field 'card.summary': is at least 1"),
        (lambda d: d["card"]["reasons"][0].update(text="BMI {age}"), "field 'card.reasons[0].text': unknown placeholder {age}"),
        (lambda d: d["card"]["reasons"][0].update(text="BMI {bmi.__class__}"), "field 'card.reasons[0].text': braces may only enclose"),
        (lambda d: d["card"]["reasons"][0].update(fact="weight"), "field 'card.reasons[0].fact': unknown fact 'weight'"),
        (lambda d: d["card"]["reasons"][0].update(when="older_age"), "field 'card.reasons[0].when': must involve the reason's own fact"),
        (lambda d: d["citations"].append("Weight loss cures everything."), "field 'citations[3]': not found word for word in the article"),
        (lambda d: d["citations"].append("knee pain"), "field 'citations[3]': not a whole sentence of the article"),
        (lambda d: d["citations"].append("alleviate knee pain for individuals who are overweight or have obesity."), "field 'citations[3]': not a whole sentence"),
        (lambda d: d["citations"].append(RANGE_OF_MOTION), "field 'citations[3]': speaks of what another sentence of the article names, which is not cited: 'Physical therapy can"),
        (lambda d: d.update(citations=[d["citations"][0], "This may be necessary after an extreme injury or for a severe case of knee arthritis."]), "field 'citations[1]': speaks of what another sentence of the article names, which is not cited: 'Some individuals may"),
        (lambda d: d.update(citations=[]), "field 'citations'"),
        (lambda d: d.pop("selection_behavior"), "selection_behavior is required"),
        (lambda d: d["suggestions"][0]["request"].update(intent="wish"), "field 'suggestions[0].request.intent'"),
        (lambda d: d["suggestions"][0]["request"].update(code={"system": "snomed", "code": "1", "display": "x"}), "field 'suggestions[0].request.code.system': got 'snomed'"),
    ],
    ids=lambda v: None,
)
def test_rule_file_errors_name_file_rule_and_field(rules_copy: Path, change: Callable[[dict], None], expected: str) -> None:  # type: ignore[type-arg]
    _edit_yaml(rules_copy / RULE, change)
    message = _error(rules_copy)
    assert message.startswith(f"{rules_copy / RULE}: rule '"), message
    assert expected in message


@pytest.mark.parametrize(
    "added",
    [
        ["Physical therapy can also help strengthen the injured area during recovery.", RANGE_OF_MOTION],
        # Opens with "This" but speaks of the article itself: not listed under refers_back.
        ["This article will explore the links between lower back and knee pain."],
    ],
)
def test_a_citation_loads_with_the_sentence_it_speaks_of_or_alone_when_it_speaks_of_none(rules_copy: Path, added: list[str]) -> None:
    _edit_yaml(rules_copy / RULE, lambda d: d["citations"].extend(added))
    rule = next(rule for rule in load_catalogue(rules_copy).rules if rule.id == "weight-management")
    assert rule.citations[-len(added) :] == tuple(added)


def test_yaml_syntax_error_names_the_file(rules_copy: Path) -> None:
    (rules_copy / RULE).write_text("id: [unclosed\n", encoding="utf-8")
    message = _error(rules_copy)
    assert message.startswith(f"{rules_copy / RULE}: not valid YAML")
    assert "\n" not in message


def test_unlisted_rule_file_is_refused(rules_copy: Path) -> None:
    shutil.copy(rules_copy / RULE, rules_copy / "rules" / "extra.yaml")
    assert "extra.yaml: rule file is not listed under 'rules' in catalogue.yaml" in _error(rules_copy)


def test_missing_rule_file_is_refused(rules_copy: Path) -> None:
    (rules_copy / RULE).unlink()
    message = _error(rules_copy)
    assert message.startswith(f"{rules_copy / 'catalogue.yaml'}: field 'rules[6]': rule file rules/weight-management.yaml not found")


def test_catalogue_file_errors_name_the_field(rules_copy: Path) -> None:
    _edit_yaml(rules_copy / "catalogue.yaml", lambda d: d["override_reasons"]["reasons"][1].pop("display"))
    assert _error(rules_copy).startswith(f"{rules_copy / 'catalogue.yaml'}: field 'override_reasons.reasons[1].display'")


def test_duplicate_rule_id_is_refused(rules_copy: Path) -> None:
    _edit_yaml(rules_copy / "catalogue.yaml", lambda d: d["rules"].append("rules/weight-management.yaml"))
    assert "is listed twice" in _error(rules_copy)


def test_a_service_without_rules_is_refused(rules_copy: Path) -> None:
    _edit_yaml(rules_copy / "rules" / "sciatica-guidance.yaml", lambda d: d.update(service="back-knee-risk-factors"))
    _edit_yaml(rules_copy / "rules" / "weight-management.yaml", lambda d: d.update(service="back-knee-risk-factors"))
    _edit_yaml(rules_copy / "rules" / "knee-arthritis-care.yaml", lambda d: d.update(service="back-knee-risk-factors"))
    assert "service 'back-knee-care-guidance' has no rules" in _error(rules_copy)


def test_missing_directory_says_how_to_fix(tmp_path: Path) -> None:
    assert "set CDS_RULES_DIR" in _error(tmp_path / "nowhere")


def test_unreadable_file_is_named(rules_copy: Path) -> None:
    (rules_copy / "services.yaml").unlink()
    (rules_copy / "services.yaml").mkdir()
    message = _error(rules_copy)
    assert message.startswith(f"{rules_copy / 'services.yaml'}: cannot be read: "), message


def test_a_refers_back_entry_that_is_not_a_sentence_of_the_article_is_refused(rules_copy: Path) -> None:
    _edit_yaml(rules_copy / "catalogue.yaml", lambda d: d["refers_back"].update({RANGE_OF_MOTION: "Physical therapy helps."}))
    message = _error(rules_copy)
    assert message.startswith(f"{rules_copy / 'catalogue.yaml'}: ")
    assert "refers_back" in message and "not a whole sentence of the article: 'Physical therapy helps.'" in message

