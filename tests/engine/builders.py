"""PatientFacts built directly, for engine and card tests that need no FHIR data."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache

from service.engine.catalogue import Catalogue, load_catalogue
from service.fhir.model import Evidence, Fact, PatientFacts
from tests.conftest import REPO_ROOT

TODAY = date(2024, 6, 1)


@cache
def catalogue() -> Catalogue:
    """The shipped catalogue (loaded once per run; it is immutable)."""
    return load_catalogue(REPO_ROOT / "rules")


def counting_uuids() -> Callable[[], str]:
    """A uuid factory for cards that can be compared: 00000000-0000-4000-8000-000000000000, ...001, ..."""
    numbers = itertools.count()
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def condition(resource_id: str, label: str, onset: date | None = None) -> Evidence:
    return Evidence("Condition", resource_id, label, onset)


def observation(resource_id: str, label: str, when: date, value: str) -> Evidence:
    return Evidence("Observation", resource_id, label, when, value)


# A plausible piece of evidence for each fact, so findings have something to show.
_EVIDENCE: Mapping[str, tuple[Evidence, ...]] = {
    "older_age": (Evidence("Patient", "p1", "Birth date 1960-02-01", date(1960, 2, 1)),),
    "injury_history": (condition("sprain", "Sprain of ankle (SNOMED 44465007)", date(2016, 5, 1)),),
    "excess_weight": (observation("bmi", "Body mass index (LOINC 39156-5)", date(2024, 3, 1), "27.9 kg/m2"),),
    "bmi": (observation("bmi", "Body mass index (LOINC 39156-5)", date(2024, 3, 1), "27.9 kg/m2"),),
    "family_history": (Evidence("FamilyMemberHistory", "fmh", "Father: Osteoarthritis of knee (SNOMED 239873007)"),),
    "recent_weight_gain": (
        observation("w-old", "Body weight (LOINC 29463-7)", date(2023, 9, 1), "80 kg"),
        observation("w-new", "Body weight (LOINC 29463-7)", date(2024, 5, 1), "85 kg"),
    ),
    "back_complaint": (condition("lbp", "Low back pain (SNOMED 279039007)", date(2024, 4, 1)),),
    "knee_complaint": (condition("kp", "Knee pain (SNOMED 30989003)", date(2024, 4, 1)),),
    "knee_pain": (condition("kp", "Knee pain (SNOMED 30989003)", date(2024, 4, 1)),),
    "sciatica": (condition("sci", "Sciatica (SNOMED 23056005)", date(2024, 2, 1)),),
    "knee_arthritis": (condition("oa", "Osteoarthritis of knee (SNOMED 239873007)", date(2011, 3, 2)),),
    "acl_injury": (condition("acl", "Injury of anterior cruciate ligament (SNOMED 444470001)", date(2024, 5, 10)),),
    "back_pain_after_trauma": (
        condition("lbp", "Low back pain (SNOMED 279039007)", date(2024, 4, 1)),
        condition("fall", "Accidental fall (SNOMED 217082002)", date(2024, 3, 20)),
    ),
    "recent_back_injury": (condition("strain", "Strain of lower back (ICD-10-CM S39.012A)", date(2024, 5, 1)),),
    "recent_knee_injury": (condition("mcl", "Injury of medial collateral ligament of knee (SNOMED 444448004)", date(2024, 5, 1)),),
    "knee_pain_after_knee_injury": (
        condition("kp", "Knee pain (SNOMED 30989003)", date(2024, 4, 1)),
        condition("mcl", "Injury of medial collateral ligament of knee (SNOMED 444448004)", date(2024, 3, 25)),
    ),
}

_VALUES: Mapping[str, Mapping[str, str | int | float]] = {
    "older_age": {"age": 64},
    "excess_weight": {"bmi": 27.9},
    "bmi": {"bmi": 27.9, "source": "measured"},
    "recent_weight_gain": {"gain_percent": 6.25, "newest_kg": 85.0, "lowest_kg": 80.0},
    "back_pain_after_trauma": {"window_days": 90},
    "recent_back_injury": {"window_days": 90},
    "recent_knee_injury": {"window_days": 90},
    "knee_pain_after_knee_injury": {"window_days": 90},
}


def patient_facts(
    *holding: str,
    patient_id: str | None = "p1",
    deceased: bool = False,
    today: date = TODAY,
    overrides: Mapping[str, Fact] | None = None,
) -> PatientFacts:
    """Every defined fact, holding only for the names given (with stock evidence and values)."""
    names = tuple(catalogue().facts)
    unknown = set(holding) - set(names)
    assert not unknown, f"not a defined fact: {unknown}"
    facts = {
        name: Fact(name, name in holding, _EVIDENCE.get(name, ()) if name in holding else (), _VALUES.get(name, {}) if name in holding else {})
        for name in names
    }
    facts.update(overrides or {})
    return PatientFacts(patient_id=patient_id, today=today, deceased=deceased, facts=facts)
