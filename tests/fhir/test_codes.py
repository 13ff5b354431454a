"""Code matching: system + code, stems with any 7th character, ranges, never the display."""

from __future__ import annotations

import pytest

from service.fhir import FactDefinitions
from tests.fhir.builders import ICD, LOINC, SNOMED


def concepts(definitions: FactDefinitions, code: str, system: str = ICD) -> frozenset[str]:
    return definitions.matcher.concepts_of(system, code)


@pytest.mark.parametrize(
    ("code", "concept"),
    [
        ("M54.50", "low_back_pain"),
        ("M54.5", "low_back_pain"),  # the old category code
        ("M51.369", "low_back_pain"),
        ("M54.42", "sciatica"),
        ("G57.01", "sciatica"),
        ("M17.11", "knee_arthritis"),
        ("S83.511A", "acl_injury"),
        ("S83.512D", "acl_injury"),  # any 7th character
        ("S83.519S", "acl_injury"),
        ("S83.241A", "knee_injury"),
        ("S82.001A", "knee_injury"),
        ("S39.012A", "back_injury"),
        ("S32.009A", "back_injury"),
        ("S72.001A", "other_lower_limb_or_hip_injury"),
        ("S93.401A", "other_lower_limb_or_hip_injury"),
        ("S99.929A", "other_lower_limb_or_hip_injury"),
        ("W19.XXXA", "fall"),
        ("W00.0XXA", "fall"),
        ("S52.509A", "other_trauma"),
        ("T14.90XA", "other_trauma"),
        ("T07.XXXA", "other_trauma"),
        ("E66.813", "overweight_or_obesity"),
        ("Z68.25", "overweight_or_obesity"),
        ("Z68.3", "overweight_or_obesity"),
        ("Z68.39", "overweight_or_obesity"),
        ("Z68.45", "overweight_or_obesity"),
        ("Z82.61", "family_history_condition"),
        ("M06.9", "arthritis_any_site"),
        ("M19.90", "arthritis_any_site"),
        ("M51.26", "disc_disorder"),
    ],
)
def test_icd_codes_match_their_concept(definitions: FactDefinitions, code: str, concept: str) -> None:
    assert concept in concepts(definitions, code)


@pytest.mark.parametrize(
    ("code", "concept"),
    [
        ("S39.012A", "low_back_pain"),  # lumbar strain: a back injury, not a complaint
        ("M19.90", "knee_arthritis"),  # unspecified arthritis: family history only
        ("M54.6", "low_back_pain"),  # thoracic spine pain is not in 1b
        ("S69.90XA", "other_lower_limb_or_hip_injury"),  # below the S70 stem
        ("S70", "fall"),
        ("W20.8XXA", "fall"),
        ("T15.0", "other_trauma"),
        ("T06.8", "other_trauma"),
        ("Z68.24", "overweight_or_obesity"),
        ("Z68.2", "overweight_or_obesity"),
        ("Z68.54", "overweight_or_obesity"),  # paediatric: not in 1b
        ("Z82.62", "family_history_condition"),
        ("M80.08XA", "back_injury"),  # osteoporotic fracture: not an injury
        ("M80.08XA", "other_trauma"),
        ("M48.50XA", "back_injury"),
        ("S83.411A", "acl_injury"),  # MCL
        ("M25.56", "knee_pain"),
    ],
)
def test_icd_codes_outside_a_concept_do_not_match(definitions: FactDefinitions, code: str, concept: str) -> None:
    assert concept not in concepts(definitions, code)


def test_dotless_and_lower_case_icd_codes_are_read(definitions: FactDefinitions) -> None:
    assert "acl_injury" in concepts(definitions, "s83511a")
    assert "knee_arthritis" in concepts(definitions, " M1711 ")


@pytest.mark.parametrize("code", ["443165006", "698754002", "64859006"])
def test_osteoporotic_fracture_paralysis_and_osteoporosis_are_not_injuries(definitions: FactDefinitions, code: str) -> None:
    assert concepts(definitions, code, SNOMED) == frozenset()


def test_snomed_and_loinc_match_exactly(definitions: FactDefinitions) -> None:
    assert concepts(definitions, "239873007", SNOMED) == {"knee_arthritis"}
    assert concepts(definitions, "2398730", SNOMED) == frozenset()
    assert concepts(definitions, "29463-7", LOINC) == {"body_weight"}
    assert concepts(definitions, "39156-5", LOINC) == {"bmi"}


def test_the_system_must_match(definitions: FactDefinitions) -> None:
    assert concepts(definitions, "239873007", ICD) == frozenset()
    assert concepts(definitions, "M17.11", SNOMED) == frozenset()
    assert concepts(definitions, "M17.11", "http://hl7.org/fhir/sid/icd-10") == frozenset()
    assert definitions.matcher.concepts_of(None, "M17.11") == frozenset()
    assert definitions.matcher.concepts_of(ICD, 17) == frozenset()


def test_display_is_never_matched(definitions: FactDefinitions) -> None:
    codeable = {"coding": [{"system": "urn:local", "code": "x", "display": "Osteoarthritis of knee"}], "text": "Knee pain"}
    assert definitions.matcher.concepts_in(codeable) == frozenset()


def test_codings_carry_the_label_parts(definitions: FactDefinitions) -> None:
    codeable = {
        "coding": [
            {"system": "urn:local", "code": "oa"},
            {"system": SNOMED, "code": "239873007", "display": "Osteoarthritis of knee"},
            {"system": ICD, "code": "M17.11"},
        ]
    }
    codings = definitions.matcher.codings(codeable)
    assert [c.label for c in codings] == ["Osteoarthritis of knee (SNOMED 239873007)", "ICD-10-CM M17.11"]
    assert definitions.matcher.concepts_in(codeable) == {"knee_arthritis", "arthritis_any_site"}


@pytest.mark.parametrize("codeable", [None, [], "x", {"coding": "x"}, {"coding": [None, 3, {"system": ICD}]}])
def test_malformed_codeable_concepts_match_nothing(definitions: FactDefinitions, codeable: object) -> None:
    assert definitions.matcher.codings(codeable) == ()
    assert definitions.matcher.concepts_in(codeable) == frozenset()
