"""The clinical content is traceable: citations are the article's own sentences, codes are verified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.engine.catalogue import load_catalogue
from tests.conftest import REPO_ROOT
from tests.support.shared import SHARED_REFERENCE

CATALOGUE = load_catalogue(REPO_ROOT / "rules")
SYSTEM_NAMES = {"http://snomed.info/sct": "SNOMED", "http://loinc.org": "LOINC", "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM"}


def _shared(name: str) -> Path:
    path = SHARED_REFERENCE / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (it is beside the project in development and CI, not in the container image)")
    return path


def test_article_copy_is_verbatim() -> None:
    original = _shared("source-article.txt").read_text(encoding="utf-8")
    copy = (REPO_ROOT / "rules" / "source-article.txt").read_text(encoding="utf-8")
    header, _, body = copy.partition("\n")
    assert header.startswith("# Provenance: verbatim copy of shared/reference/source-article.txt")
    assert body == original
    assert CATALOGUE.article == original


@pytest.mark.parametrize("rule", CATALOGUE.rules, ids=lambda rule: rule.id)
def test_every_citation_is_a_whole_sentence_of_the_article(rule: object) -> None:
    article = _shared("source-article.txt").read_text(encoding="utf-8")
    for citation in rule.citations:  # type: ignore[attr-defined]
        assert citation in article, f"{rule.id}: not in the article: {citation!r}"  # type: ignore[attr-defined]
        start = article.index(citation)
        assert start == 0 or article[start - 1] in " \n", f"{citation!r} starts mid-sentence"
        assert citation[0].isupper() and citation.endswith("."), f"{citation!r} is not a whole sentence"


def _verified_codes() -> set[tuple[str, str]]:
    """(system name, code) for every row of clinical-codes.md whose status column is V."""
    codes: set[tuple[str, str]] = set()
    for line in _shared("clinical-codes.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in SYSTEM_NAMES.values() and cells[3] == "V":
            codes.update((cells[0], code) for code in re.split(r"[,/;\s]+", cells[1]) if code)
    return codes


def test_every_code_a_rule_suggests_is_verified_in_clinical_codes() -> None:
    verified = _verified_codes()
    assert ("SNOMED", "91251008") in verified  # the parser reads the table
    used = [(rule.id, item.code) for rule in CATALOGUE.rules for item in rule.suggestions if item.code]
    assert used, "no coded suggestion at all"
    for rule_id, code in used:
        assert code.system in SYSTEM_NAMES, f"{rule_id}: unknown system {code.system}"
        assert (SYSTEM_NAMES[code.system], code.code) in verified, f"{rule_id}: {code.code} is not verified in clinical-codes.md"


def test_coded_suggestions_use_the_verified_display() -> None:
    text = _shared("clinical-codes.md").read_text(encoding="utf-8")
    for rule in CATALOGUE.rules:
        for item in rule.suggestions:
            if item.code:
                row = next(line for line in text.splitlines() if f"| {item.code.code} |" in line or f" {item.code.code}," in line or f", {item.code.code} |" in line)
                assert item.code.display in row, f"{rule.id}: display {item.code.display!r} not in {row!r}"


def test_every_rule_names_its_version_service_and_citation() -> None:
    for rule in CATALOGUE.rules:
        assert re.fullmatch(r"\d+\.\d+\.\d+", rule.version)
        assert rule.service in CATALOGUE.services
        assert rule.citations


def test_card_texts_claim_no_more_than_the_sentences_they_cite() -> None:
    """A clinician's reading of the cards (session 15) found three texts stronger or narrower than
    their source: each is pinned to the wording that keeps to it."""
    rules = {rule.id: rule for rule in load_catalogue(REPO_ROOT / "rules").rules}
    # "lower back pain often preceded new knee pain in people over 50": back pain came first in
    # those who got knee pain, not knee pain usually following back pain.
    summary = rules["back-pain-knee-risk"].summary.text
    assert "came before new knee pain over 50" in summary and "follows" not in summary
    # The fact counts osteoarthritis and rheumatoid arthritis at any site (clinical-rules.md 1).
    (family,) = [reason for reason in rules["risk-factors"].reasons if reason.fact == "family_history"]
    assert "arthritis" in family.text.text
    # "Changes to walking patterns can also put additional pressure on the lower back, which may cause pain."
    assert "can put extra pressure on the lower back, which may cause pain" in " ".join(rules["knee-pain-back-risk"].advice.text.split())
