"""Every real FHIR fixture patient runs through compute_facts; the clear cases are asserted exactly.

The Synthea bundles are read from shared/fixtures/fhir (see its README for each patient).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from service.fhir import FactDefinitions, PatientFacts, compute_facts
from tests.conftest import SHARED_FIXTURES
from tests.fhir.builders import holding

BUNDLES = sorted((SHARED_FIXTURES / "synthea-r4-bundles").glob("*.json")) + sorted(
    (SHARED_FIXTURES / "iris-synthea-r4-bundles").glob("*.json")
)
SINGLE_FILES = sorted((SHARED_FIXTURES / "au-core-test-data").glob("*.json")) + sorted(
    (SHARED_FIXTURES / "hl7-r4-examples").glob("*.json")
)
AS_OF = date(2021, 6, 1)

if not BUNDLES:  # pragma: no cover - the shared fixtures sit next to the checkout
    pytest.skip(f"no Synthea fixtures under {SHARED_FIXTURES}", allow_module_level=True)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _bundle(prefix: str) -> dict[str, Any]:
    (path,) = [p for p in BUNDLES if p.name.startswith(prefix)]
    return _load(path)  # type: ignore[no-any-return]


def _facts(definitions: FactDefinitions, prefix: str, today: date = AS_OF) -> PatientFacts:
    return compute_facts([_bundle(prefix)], patient_id=None, today=today, definitions=definitions)


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name.split("_")[0] + "_" + p.name.split("_")[1])
def test_every_synthea_bundle_runs_clean(definitions: FactDefinitions, path: Path) -> None:
    bundle = _load(path)
    facts = compute_facts([bundle], patient_id=None, today=AS_OF, definitions=definitions)
    assert facts.skipped == ()
    assert set(facts.facts) == set(definitions.facts)
    (person,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert facts.patient_id == person["id"]
    # The same patient asked for by id gives the same facts.
    assert compute_facts([bundle], patient_id=person["id"], today=AS_OF, definitions=definitions) == facts


@pytest.mark.parametrize("path", SINGLE_FILES, ids=lambda p: p.name)
def test_every_single_resource_fixture_runs_clean(definitions: FactDefinitions, path: Path) -> None:
    facts = compute_facts([_load(path)], patient_id=None, today=AS_OF, definitions=definitions)
    assert facts.skipped == ()


def test_chauncey_johnston_knee_oa_and_bmi_27_9(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Chauncey_Johnston", today=date(2020, 6, 1))
    assert not facts.deceased
    assert holding(facts) == {"knee_arthritis", "knee_complaint", "bmi", "excess_weight"}
    assert not facts.holds("older_age")  # b. 1975-10-12: 44
    excess = facts.facts["excess_weight"]
    assert excess.values == {"bmi": 27.9}
    (evidence,) = excess.evidence  # the BMI decides, not the active 162864005 from 2000
    assert evidence.resource_type == "Observation" and evidence.date == date(2020, 2, 23)
    assert evidence.label == "Body Mass Index (LOINC 39156-5)" and evidence.value == "27.9 kg/m2"
    (oa,) = facts.facts["knee_arthritis"].evidence
    assert oa.label == "Osteoarthritis of knee (SNOMED 239873007)" and oa.date == date(2011, 10, 3)


def test_burton_kozey_resolved_acl_injury_is_history_only(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Burton_Kozey")
    assert holding(facts) == {"older_age", "injury_history", "bmi", "excess_weight"}
    assert facts.facts["older_age"].values == {"age": 63}
    evidence = facts.facts["injury_history"].evidence
    assert [(e.label, e.date) for e in evidence] == [
        ("Injury of anterior cruciate ligament (SNOMED 444470001)", date(2017, 12, 16)),
        ("Sprain of ankle (SNOMED 44465007)", date(2016, 10, 31)),
    ]
    assert not facts.holds("acl_injury") and not facts.holds("knee_complaint")


def test_clemente_kreiger_old_bmi_falls_back_to_the_obesity_diagnosis(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Clemente_Kreiger")
    assert holding(facts) == {"excess_weight"}  # BMI 30.5 is from 2018-09-17: outside 730 days
    (evidence,) = facts.facts["excess_weight"].evidence
    assert evidence.resource_type == "Condition" and evidence.label.endswith("(SNOMED 162864005)")
    # Within 730 days of that BMI, the BMI decides instead.
    recent = _facts(definitions, "Clemente_Kreiger", today=date(2019, 1, 1))
    assert recent.facts["excess_weight"].values == {"bmi": 30.5}


def test_twyla_moen_osteoporotic_wrist_fracture_is_not_injury_history(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Twyla_Moen")
    assert holding(facts) == {"older_age", "bmi", "excess_weight"}


def test_neva_hyatt_chronic_paralysis_is_not_an_injury(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Neva_Hyatt")
    assert holding(facts) == {"older_age", "bmi", "excess_weight"}
    assert facts.facts["bmi"].values == {"bmi": 30.1, "source": "measured"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("Erin_Rempel", {"injury_history", "bmi"}),  # MCL injury, resolved; BMI 19.7
        ("Jackson_Bode", {"injury_history", "bmi"}),  # ankle fracture; BMI 21.4
        ("Xavier_Lueilwitz", {"bmi", "excess_weight"}),  # a wrist sprain is not injury history
        ("Buster_Hoeger", {"bmi"}),  # the negative control: BMI 24.6
    ],
)
def test_other_synthea_patients(definitions: FactDefinitions, prefix: str, expected: set[str]) -> None:
    assert holding(_facts(definitions, prefix)) == expected


def test_kallie_is_deceased(definitions: FactDefinitions) -> None:
    facts = _facts(definitions, "Kallie862")
    assert facts.deceased
    assert {"knee_arthritis", "older_age"} <= holding(facts)
