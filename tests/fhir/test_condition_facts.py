"""Condition facts: usable, active, abatement, onset, and the timing clauses (clinical-rules.md 1)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from service.fhir import FactDefinitions
from tests.fhir.builders import CLINICAL as CLINICAL_SYSTEM
from tests.fhir.builders import ICD, SNOMED, condition, facts_of, holding, patient

KNEE_OA = "239873007"
KNEE_PAIN = "30989003"
LOW_BACK_PAIN = "279039007"
SCIATICA = "23056005"
ACL = "444470001"
OBESITY = "162864005"


@pytest.mark.parametrize(
    ("code", "system", "facts"),
    [
        (LOW_BACK_PAIN, SNOMED, {"back_complaint"}),
        ("M54.50", ICD, {"back_complaint"}),
        (SCIATICA, SNOMED, {"back_complaint", "sciatica"}),
        ("M54.41", ICD, {"back_complaint", "sciatica"}),
        (KNEE_PAIN, SNOMED, {"knee_complaint", "knee_pain"}),
        ("M25.561", ICD, {"knee_complaint", "knee_pain"}),
        (KNEE_OA, SNOMED, {"knee_complaint", "knee_arthritis"}),
        ("M17.11", ICD, {"knee_complaint", "knee_arthritis"}),
        # An active knee injury with onset 2024-01-10 (157 days before today): not recent.
        ("444448004", SNOMED, {"knee_complaint", "injury_history"}),
        (ACL, SNOMED, {"knee_complaint", "injury_history", "acl_injury"}),
        ("S83.512D", ICD, {"knee_complaint", "injury_history", "acl_injury"}),
        ("S39.012A", ICD, {"injury_history"}),  # lumbar strain: a back injury, not a complaint
        ("S32.009A", ICD, {"injury_history"}),
        ("16114001", SNOMED, {"injury_history"}),  # ankle fracture: lower-limb injury
        ("70704007", SNOMED, set()),  # wrist sprain: trauma, but not injury history
        ("443165006", SNOMED, set()),  # pathological fracture due to osteoporosis
        ("698754002", SNOMED, set()),  # chronic paralysis
        ("M19.90", ICD, set()),  # unspecified arthritis: family history only
        ("57676002", SNOMED, set()),  # joint pain, not knee-specific
        (OBESITY, SNOMED, {"excess_weight"}),  # no BMI at all: the diagnosis counts
    ],
)
def test_each_code_makes_exactly_its_facts_hold(
    definitions: FactDefinitions, code: str, system: str, facts: set[str]
) -> None:
    assert holding(facts_of(definitions, condition(code, system))) == {"older_age"} | facts


def test_evidence_names_the_condition_with_its_display(definitions: FactDefinitions) -> None:
    oa = condition(KNEE_OA, display="Osteoarthritis of knee", resource_id="oa1", onset="2011-10-03T10:00:00+00:00")
    fact = facts_of(definitions, oa).facts["knee_arthritis"]
    assert fact.holds
    (evidence,) = fact.evidence
    assert evidence.reference == "Condition/oa1"
    assert evidence.label == "Osteoarthritis of knee (SNOMED 239873007)"
    assert str(evidence.date) == "2011-10-03"
    assert evidence.dated == "onset"


AGE_50 = {"value": 50, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
AGE_6_MONTHS = {"value": 6, "unit": "mo", "system": "http://unitsofmeasure.org", "code": "mo"}


@pytest.mark.parametrize(
    ("dates", "day", "dated", "shown"),
    [
        ({"onsetPeriod": {"start": "2011-10-03"}}, "2011-10-03", "onset", None),
        ({"onsetAge": AGE_50}, "2010-03-01", "onset", "at age 50 (2010-03-01)"),  # born 1960-03-01
        ({"onsetAge": AGE_6_MONTHS}, "1960-09-01", "onset", "at age 6 months (1960-09-01)"),
        ({"recordedDate": "2019-06-30"}, "2019-06-30", "recorded", None),
        ({"onsetDateTime": "2011-10-03", "recordedDate": "2019-06-30"}, "2011-10-03", "onset", None),
        ({"onsetDateTime": "2011"}, "2011-01-01", "onset", "2011 (counted as 2011-01-01)"),  # partial: as written, and its day
        ({"onsetPeriod": {"start": "2011-03"}}, "2011-03-01", "onset", "2011-03 (counted as 2011-03-01)"),
        ({"recordedDate": "2019"}, "2019-01-01", "recorded", "2019 (counted as 2019-01-01)"),
        ({}, None, None, None),
    ],
)
def test_evidence_says_whether_its_date_is_the_onset_or_the_day_it_was_recorded(
    definitions: FactDefinitions, dates: dict[str, Any], day: str | None, dated: str | None, shown: str | None
) -> None:
    """Old charts record a condition years after it began: a card must not show one as the other,
    nor a year as the first of January."""
    oa = condition(KNEE_OA, onset=None, **dates)
    (evidence,) = facts_of(definitions, oa).facts["knee_arthritis"].evidence
    assert (str(evidence.date) if evidence.date else None, evidence.dated, evidence.day_shown) == (day, dated, shown)


def test_label_falls_back_to_text_then_concept(definitions: FactDefinitions) -> None:
    with_text = condition("M17.11", ICD)
    with_text["code"]["text"] = "OA right knee"
    bare = condition("M17.11", ICD)
    assert facts_of(definitions, with_text).facts["knee_arthritis"].evidence[0].label == "OA right knee (ICD-10-CM M17.11)"
    assert facts_of(definitions, bare).facts["knee_arthritis"].evidence[0].label == "Knee arthritis (ICD-10-CM M17.11)"


def test_every_fact_is_present_holding_or_not(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions)
    assert set(facts.facts) == set(definitions.facts)
    assert all(not fact.evidence and not fact.values for fact in facts.facts.values() if not fact.holds)


# --- usable and active ------------------------------------------------------------------------


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_and_entered_in_error_conditions_count_for_nothing(definitions: FactDefinitions, verification: str) -> None:
    facts = facts_of(
        definitions,
        condition(KNEE_OA, verification=verification),
        condition(ACL, verification=verification, clinical=None),
        condition("Z82.61", ICD, verification=verification),
        condition(OBESITY, verification=verification),
    )
    assert holding(facts) == {"older_age"}


@pytest.mark.parametrize("verification", [None, "confirmed", "provisional", "differential", "unconfirmed"])
def test_other_verification_statuses_are_usable(definitions: FactDefinitions, verification: str | None) -> None:
    assert facts_of(definitions, condition(KNEE_OA, verification=verification)).holds("knee_arthritis")


@pytest.mark.parametrize("clinical", [None, "active", "recurrence", "relapse"])
def test_active_clinical_statuses(definitions: FactDefinitions, clinical: str | None) -> None:
    assert facts_of(definitions, condition(KNEE_OA, clinical=clinical)).holds("knee_arthritis")


def test_a_clinical_status_given_only_as_text_is_not_absent_so_not_active(definitions: FactDefinitions) -> None:
    """clinical-rules.md 1: active means clinicalStatus absent or coded active/recurrence/relapse."""
    for said_in_words in ({"text": "resolved"}, {"coding": [{"system": CLINICAL_SYSTEM, "display": "Resolved"}]}, {"coding": [{"display": "Resolved"}]}):
        assert not facts_of(definitions, condition(KNEE_OA, clinical=None, clinicalStatus=said_in_words)).holds("knee_arthritis")


@pytest.mark.parametrize("empty", [{}, {"coding": []}, {"text": " "}])
def test_an_empty_clinical_status_says_nothing_so_counts_as_absent(definitions: FactDefinitions, empty: dict[str, Any]) -> None:
    assert facts_of(definitions, condition(KNEE_OA, clinical=None, clinicalStatus=empty)).holds("knee_arthritis")


@pytest.mark.parametrize("clinical", ["inactive", "remission", "resolved"])
def test_inactive_clinical_statuses_are_not_active_but_still_usable(definitions: FactDefinitions, clinical: str) -> None:
    facts = facts_of(definitions, condition(KNEE_OA, clinical=clinical), condition(ACL, clinical=clinical))
    assert not facts.holds("knee_arthritis") and not facts.holds("acl_injury") and not facts.holds("knee_complaint")
    assert facts.holds("injury_history")  # injury history: any usable injury, at any time


@pytest.mark.parametrize(
    "abatement",
    [
        {"abatementDateTime": "2024-06-15"},  # today
        {"abatementDateTime": "2024"},  # partial: its first day
        {"abatementDateTime": "2020-01-01T10:00:00"},  # no offset
        {"abatementBoolean": True},  # STU3's form, tolerated
        {"abatementString": "in childhood"},
        {"abatementAge": {"value": 40, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"}},
        {"abatementPeriod": {"start": "2024-06-01"}},
        {"abatementPeriod": {"end": "2024-06-01"}},
        {"abatementRange": {"low": {"value": 40, "system": "http://unitsofmeasure.org", "code": "a"}}},
    ],
)
def test_any_abatement_makes_a_condition_not_active_whatever_its_status(
    definitions: FactDefinitions, abatement: dict[str, Any]
) -> None:
    facts = facts_of(definitions, condition(KNEE_OA, clinical="active", **abatement), condition(ACL, clinical=None, **abatement))
    assert not facts.holds("knee_arthritis") and not facts.holds("acl_injury")
    assert facts.holds("injury_history")


@pytest.mark.parametrize(
    "abatement",
    [
        {"abatementDateTime": "2024-06-17"},  # the day after tomorrow: tomorrow is today east of UTC
        {"abatementBoolean": False},
        {"abatementPeriod": {"start": "2024-07-01"}},
        {"abatementPeriod": {"end": "2024-07-01"}},
    ],
)
def test_abatement_in_the_future_or_false_leaves_it_active(definitions: FactDefinitions, abatement: dict[str, Any]) -> None:
    assert facts_of(definitions, condition(KNEE_OA, **abatement)).holds("knee_arthritis")


def test_a_condition_with_no_onset_is_active_but_meets_no_timing_clause(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        condition(KNEE_PAIN, onset=None),
        condition("S83.90XA", ICD, onset=None),  # knee injury, no onset
        condition(LOW_BACK_PAIN, onset=None),
        condition("S39.012A", ICD, onset=None),
    )
    assert {"knee_pain", "knee_complaint", "back_complaint", "injury_history"} <= holding(facts)
    assert not facts.holds("recent_knee_injury") and not facts.holds("recent_back_injury")
    assert not facts.holds("knee_pain_after_knee_injury") and not facts.holds("back_pain_after_trauma")


def test_a_condition_whose_onset_is_after_today_has_not_happened_yet(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(KNEE_OA, onset="2024-06-17"), condition(ACL, onset="2025"))
    assert holding(facts) == {"older_age"}


def test_dates_written_today_east_of_utc_have_happened(definitions: FactDefinitions) -> None:
    """Today is 2024-06-15 (UTC), when it is already 2024-06-16 in Sydney: a Condition or an
    abatement the clinic dates "2024-06-16" (or 09:00 there, with no offset) is not in the future."""
    recorded_there = condition(ACL, onset="2024-06-16")
    assert facts_of(definitions, recorded_there).holds("recent_knee_injury")
    assert facts_of(definitions, condition(ACL, onset="2024-06-16T09:00:00")).holds("recent_knee_injury")
    assert not facts_of(definitions, condition(KNEE_OA, abatementDateTime="2024-06-16")).holds("knee_arthritis")


def test_a_time_with_an_offset_has_happened_once_its_utc_date_is_today(definitions: FactDefinitions) -> None:
    """The extra day is for dates east of UTC; a time with an offset says when it is in UTC."""
    assert facts_of(definitions, condition(ACL, onset="2024-06-16T09:00:00+10:00")).holds("recent_knee_injury")  # 06-15 23:00 UTC
    assert not facts_of(definitions, condition(ACL, onset="2024-06-16T20:00:00-08:00")).holds("knee_complaint")  # 06-17 04:00 UTC
    assert not facts_of(definitions, condition(ACL, onset="2024-06-16T01:00:00Z")).holds("knee_complaint")
    # An abatement still to come west of UTC leaves the Condition active.
    assert facts_of(definitions, condition(KNEE_OA, abatementDateTime="2024-06-16T09:00:00-05:00")).holds("knee_arthritis")
    assert facts_of(definitions, condition(KNEE_OA, abatementPeriod={"start": "2024-06-16T09:00:00Z"})).holds("knee_arthritis")


def test_an_onset_with_an_offset_and_no_seconds_is_read(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(ACL, onset="2024-06-10T10:00+02:00"))
    assert facts.holds("recent_knee_injury") and facts.skipped == ()


# --- onset ------------------------------------------------------------------------------------


def _recent_knee_injury(definitions: FactDefinitions, **fields: Any) -> bool:
    resource = condition("S83.511A", ICD, onset=None, **fields)
    return facts_of(definitions, resource).holds("recent_knee_injury")


def test_onset_is_onset_datetime_first(definitions: FactDefinitions) -> None:
    assert _recent_knee_injury(definitions, onsetDateTime="2024-05-01", recordedDate="2020-01-01")
    assert not _recent_knee_injury(definitions, onsetDateTime="2020-01-01", recordedDate="2024-05-01")


def test_onset_period_start_comes_next(definitions: FactDefinitions) -> None:
    assert _recent_knee_injury(definitions, onsetPeriod={"start": "2024-05-01"}, recordedDate="2020-01-01")
    assert not _recent_knee_injury(definitions, onsetPeriod={"start": "2020-05-01"}, recordedDate="2024-05-01")
    # A period without a start says nothing about onset: recordedDate decides.
    assert _recent_knee_injury(definitions, onsetPeriod={"end": "2020-05-01"}, recordedDate="2024-05-01")


def test_onset_age_is_added_to_the_birth_date(definitions: FactDefinitions) -> None:
    age = {"value": 64, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"}
    injury = condition("S83.511A", ICD, onset=None, onsetAge=age, recordedDate="2020-01-01")
    # Born 1960-03-01: 64 years old on 2024-03-01, 106 days before today: not recent.
    assert not facts_of(definitions, injury).holds("recent_knee_injury")
    # Born 1960-04-01: 64 on 2024-04-01, 75 days before today: recent.
    assert facts_of(definitions, patient(birth="1960-04-01"), injury).holds("recent_knee_injury")
    # No birth date: onsetAge cannot be placed; recordedDate (2020) is the onset.
    assert not facts_of(definitions, patient(birth=None), injury).holds("recent_knee_injury")
    recorded_recently = condition("S83.511A", ICD, onset=None, onsetAge=age, recordedDate="2024-06-01")
    assert facts_of(definitions, patient(birth=None), recorded_recently).holds("recent_knee_injury")


def test_onset_age_uses_the_first_day_of_a_partial_birth_date(definitions: FactDefinitions) -> None:
    """An onset's partial date counts as its first day; so does a partial birth date it is counted from."""
    age = {"value": 64, "system": "http://unitsofmeasure.org", "code": "a"}
    injury = condition("S83.511A", ICD, onset=None, onsetAge=age)
    # Born "1960": 1960-01-01 + 64 years = 2024-01-01 (the last day, 2024-12-31, would drop it as not yet happened).
    facts = facts_of(definitions, patient(birth="1960"), injury)
    assert facts.holds("knee_complaint") and not facts.holds("recent_knee_injury")
    assert facts.facts["knee_complaint"].evidence[0].date == date(2024, 1, 1)
    # Born "1960-04": 1960-04-01 + 64 years = 2024-04-01, 75 days ago.
    assert facts_of(definitions, patient(birth="1960-04"), injury).holds("recent_knee_injury")
    # Born "1960-03": 2024-03-01, 106 days ago: outside 90 days.
    assert not facts_of(definitions, patient(birth="1960-03"), injury).holds("recent_knee_injury")


def test_recorded_date_is_the_last_resort(definitions: FactDefinitions) -> None:
    assert _recent_knee_injury(definitions, recordedDate="2024-05-01")
    assert not _recent_knee_injury(definitions, recordedDate="2023-05-01")


def test_partial_onset_counts_as_its_first_day(definitions: FactDefinitions) -> None:
    # "2024-03" is 2024-03-01, 106 days before today: outside 90 days.
    assert not _recent_knee_injury(definitions, onsetDateTime="2024-03")
    assert _recent_knee_injury(definitions, onsetDateTime="2024-04")  # 2024-04-01: 75 days


# --- recent injuries --------------------------------------------------------------------------


@pytest.mark.parametrize(("onset", "recent"), [("2024-03-17", True), ("2024-03-16", False), ("2024-06-15", True)])
def test_recent_injury_window_is_90_days(definitions: FactDefinitions, onset: str, recent: bool) -> None:
    # 2024-03-17 is exactly 90 days before 2024-06-15.
    facts = facts_of(definitions, condition("S39.012A", ICD, onset=onset), condition("S83.241A", ICD, onset=onset))
    assert facts.holds("recent_back_injury") is recent
    assert facts.holds("recent_knee_injury") is recent
    if recent:
        assert facts.facts["recent_back_injury"].values == {"window_days": 90}


def test_a_recent_injury_must_be_active(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        condition("S39.012A", ICD, onset="2024-06-01", clinical="resolved"),
        condition("S83.241A", ICD, onset="2024-06-01", abatementDateTime="2024-06-10"),
    )
    assert not facts.holds("recent_back_injury") and not facts.holds("recent_knee_injury")
    assert facts.holds("injury_history")


def test_an_inactive_condition_counts_for_nothing_beside_an_active_one_of_its_kind(definitions: FactDefinitions) -> None:
    """An old active injury or back pain does not let a resolved recent one of the same kind meet a timing clause."""
    facts = facts_of(
        definitions,
        condition("444448004", SNOMED, onset="2022-05-01", resource_id="old-mcl"),
        condition("444448004", SNOMED, onset="2024-05-20", abatementDateTime="2024-05-25", resource_id="new-mcl"),
        condition("W19.XXXA", ICD, onset="2024-01-10", clinical="resolved", resource_id="fall"),
        condition(LOW_BACK_PAIN, onset="2015-01-01", resource_id="old-lbp"),
        condition(LOW_BACK_PAIN, onset="2024-02-01", clinical="resolved", resource_id="new-lbp"),
    )
    assert not facts.holds("recent_knee_injury") and not facts.holds("back_pain_after_trauma")
    assert [e.reference for e in facts.facts["knee_complaint"].evidence] == ["Condition/old-mcl"]
    assert [e.reference for e in facts.facts["back_complaint"].evidence] == ["Condition/old-lbp"]


def test_recent_back_injury_by_vertebral_fracture(definitions: FactDefinitions) -> None:
    fracture = condition("15724005", SNOMED, onset="2024-05-20", display="Fracture of vertebral column", resource_id="vf")
    fact = facts_of(definitions, fracture).facts["recent_back_injury"]
    assert fact.holds and fact.evidence[0].reference == "Condition/vf"


# --- after an injury --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trauma_onset", "pain_onset", "holds"),
    [
        ("2024-01-10", "2024-01-10", True),  # the same day
        ("2024-01-10", "2024-04-09", True),  # 90 days after
        ("2024-01-10", "2024-04-10", False),  # 91 days after
        ("2024-01-10", "2024-01-09", False),  # before the injury
    ],
)
def test_back_pain_after_trauma_window(
    definitions: FactDefinitions, trauma_onset: str, pain_onset: str, holds: bool
) -> None:
    facts = facts_of(
        definitions,
        condition("70704007", SNOMED, onset=trauma_onset, clinical="resolved", resource_id="wrist"),  # any trauma
        condition(LOW_BACK_PAIN, onset=pain_onset, resource_id="lbp"),
    )
    fact = facts.facts["back_pain_after_trauma"]
    assert fact.holds is holds
    if holds:
        assert [e.reference for e in fact.evidence] == ["Condition/lbp", "Condition/wrist"]
        assert [str(e.date) for e in fact.evidence] == [pain_onset, trauma_onset]
        assert fact.values == {"window_days": 90}


@pytest.mark.parametrize(
    ("code", "system"),
    [("W19.XXXA", ICD), ("217082002", SNOMED), ("S32.009A", ICD), ("T14.90XA", ICD), ("S52.509A", ICD), ("39848009", SNOMED)],
)
def test_trauma_includes_falls_fractures_and_injury_codes(definitions: FactDefinitions, code: str, system: str) -> None:
    facts = facts_of(definitions, condition(code, system, onset="2024-01-10", clinical="resolved"), condition(SCIATICA, onset="2024-02-01"))
    assert facts.holds("back_pain_after_trauma")


@pytest.mark.parametrize(("code", "system"), [("443165006", SNOMED), ("698754002", SNOMED), ("M80.08XA", ICD), ("64859006", SNOMED)])
def test_osteoporotic_fractures_and_paralysis_are_not_trauma(definitions: FactDefinitions, code: str, system: str) -> None:
    facts = facts_of(definitions, condition(code, system, onset="2024-01-10"), condition(LOW_BACK_PAIN, onset="2024-02-01"))
    assert not facts.holds("recent_knee_injury") and not facts.holds("back_pain_after_trauma")


def test_back_pain_after_trauma_needs_an_active_complaint_and_a_usable_trauma(definitions: FactDefinitions) -> None:
    resolved_pain = facts_of(
        definitions, condition("W19.XXXA", ICD, onset="2024-01-10"), condition(LOW_BACK_PAIN, onset="2024-02-01", clinical="resolved")
    )
    refuted_fall = facts_of(
        definitions, condition("W19.XXXA", ICD, onset="2024-01-10", verification="refuted"), condition(LOW_BACK_PAIN, onset="2024-02-01")
    )
    assert not resolved_pain.holds("back_pain_after_trauma")
    assert not refuted_fall.holds("back_pain_after_trauma")


@pytest.mark.parametrize(
    ("injury_code", "system", "pain_code", "holds"),
    [
        ("S83.511A", ICD, KNEE_PAIN, True),
        ("239720000", SNOMED, "M25.562", True),  # meniscus tear
        ("W10.9XXA", ICD, KNEE_PAIN, True),  # a fall
        ("33036003", SNOMED, KNEE_PAIN, True),
        ("16114001", SNOMED, KNEE_PAIN, False),  # ankle fracture: not a knee injury or fall
        ("S83.511A", ICD, KNEE_OA, False),  # knee arthritis does not trigger it
    ],
)
def test_knee_pain_after_knee_injury_or_fall(
    definitions: FactDefinitions, injury_code: str, system: str, pain_code: str, holds: bool
) -> None:
    pain_system = ICD if pain_code.startswith("M") else SNOMED
    facts = facts_of(
        definitions,
        condition(injury_code, system, onset="2023-01-05", clinical="resolved", abatementDateTime="2023-03-01"),
        condition(pain_code, pain_system, onset="2023-03-20"),
    )
    assert facts.holds("knee_pain_after_knee_injury") is holds


@pytest.mark.parametrize(("pain_onset", "holds"), [("2023-04-05", True), ("2023-04-06", False), ("2023-01-04", False)])
def test_knee_pain_after_knee_injury_window(definitions: FactDefinitions, pain_onset: str, holds: bool) -> None:
    facts = facts_of(
        definitions,
        condition("S83.511A", ICD, onset="2023-01-05", clinical="resolved"),
        condition(KNEE_PAIN, onset=pain_onset),
    )
    assert facts.holds("knee_pain_after_knee_injury") is holds


def test_evidence_lists_newest_onset_first(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        condition(KNEE_OA, onset="2010-01-01", resource_id="old"),
        condition("M17.11", ICD, onset="2020-01-01", resource_id="new"),
        condition("M17.12", ICD, onset=None, resource_id="unknown"),
    )
    refs = [e.reference for e in facts.facts["knee_arthritis"].evidence]
    assert refs == ["Condition/new", "Condition/old", "Condition/unknown"]
