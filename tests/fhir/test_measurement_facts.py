"""BMI, excess weight and recent weight gain from Observations (clinical-rules.md 1 and 1b)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from service.fhir import FactDefinitions
from tests.fhir.builders import (
    LOINC,
    SNOMED,
    TODAY,
    bmi,
    condition,
    facts_of,
    height,
    load_fixture,
    observation,
    patient,
    weight,
)

OBESITY = "162864005"


def days_ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


# --- BMI --------------------------------------------------------------------------------------


def test_a_bmi_just_under_the_threshold_is_not_shown_as_the_threshold(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, bmi(24.96, "2024-02-23", resource_id="b1"))
    fact = facts.facts["bmi"]
    assert fact.values == {"bmi": 24.96, "source": "measured"} and not facts.holds("excess_weight")
    assert fact.evidence[0].value == "24.96 kg/m2"


def test_newest_measured_bmi(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, bmi(31.0, "2023-01-01"), bmi(27.9, "2024-02-23T12:01:49+00:00", resource_id="b2"))
    fact = facts.facts["bmi"]
    assert fact.holds and fact.values == {"bmi": 27.9, "source": "measured"}
    (evidence,) = fact.evidence
    assert evidence.reference == "Observation/b2" and evidence.value == "27.9 kg/m2" and evidence.date == date(2024, 2, 23)
    assert evidence.label == "Body mass index (LOINC 39156-5)"  # no display: the concept's label
    assert evidence.dated == "measured"
    excess = facts.facts["excess_weight"]
    assert excess.holds and excess.values == {"bmi": 27.9} and excess.evidence == fact.evidence


@pytest.mark.parametrize(
    ("dates", "dated", "shown"),
    [
        ({"effectiveDateTime": "2024-02-23"}, "measured", None),
        ({"effectivePeriod": {"start": "2024-02-23T10:00:00Z"}}, "measured", None),
        ({"effectiveInstant": "2024-02-23T10:00:00Z", "issued": "2024-02-25T10:00:00Z"}, "measured", None),
        ({"issued": "2024-02-23T10:00:00Z"}, "issued", None),  # no effective[x]: the day the result was issued
        # A partial date counts as its first day (clinical-rules.md 1): the card says so.
        ({"effectiveDateTime": "2024-02"}, "measured", "2024-02 (counted as 2024-02-01)"),
        ({"effectivePeriod": {"end": "2024"}, "issued": "2024-02-25T10:00:00Z"}, "measured", "2024 (counted as 2024-01-01)"),
    ],
)
def test_evidence_says_whether_its_date_is_when_it_was_measured_or_issued(
    definitions: FactDefinitions, dates: dict[str, Any], dated: str, shown: str | None
) -> None:
    reading = bmi(27.9, "2024-02-23")
    del reading["effectiveDateTime"]
    (evidence,) = facts_of(definitions, {**reading, **dates}).facts["bmi"].evidence
    assert (evidence.dated, evidence.day_shown) == (dated, shown)
    assert evidence.date == (date.fromisoformat(shown.split(" (counted as ")[1][:10]) if shown else date(2024, 2, 23))


# -1: dated tomorrow, which is today east of UTC; -2 is in the future everywhere.
@pytest.mark.parametrize(("age_days", "counts"), [(730, True), (731, False), (0, True), (-1, True), (-2, False)])
def test_bmi_window_is_730_days_up_to_today(definitions: FactDefinitions, age_days: int, counts: bool) -> None:
    facts = facts_of(definitions, bmi(27.0, days_ago(age_days)))
    assert facts.holds("bmi") is counts
    assert facts.holds("excess_weight") is counts


def test_newest_bmi_decides_over_an_older_obesity_diagnosis(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, condition(OBESITY, onset="2000-11-19"), bmi(27.9, "2024-02-23"))
    excess = facts.facts["excess_weight"]
    assert excess.holds and excess.values == {"bmi": 27.9}
    assert [e.resource_type for e in excess.evidence] == ["Observation"]


def test_a_normal_bmi_decides_even_over_a_newer_obesity_diagnosis(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, bmi(24.0, "2024-01-01"), condition(OBESITY, onset="2024-06-01"))
    assert facts.holds("bmi") and not facts.holds("excess_weight")


def test_without_a_bmi_in_the_window_an_active_obesity_diagnosis_counts(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, bmi(30.5, "2018-09-17"), condition(OBESITY, onset="2018-09-17", resource_id="ob"))
    assert not facts.holds("bmi")
    excess = facts.facts["excess_weight"]
    assert excess.holds and excess.values == {}
    assert [e.reference for e in excess.evidence] == ["Condition/ob"]


@pytest.mark.parametrize(
    "diagnosis",
    [
        condition(OBESITY, clinical="resolved"),
        condition(OBESITY, verification="refuted"),
        condition(OBESITY, abatementDateTime="2020-01-01"),
        condition("Z68.24", "http://hl7.org/fhir/sid/icd-10-cm"),
    ],
)
def test_only_an_active_overweight_diagnosis_counts(definitions: FactDefinitions, diagnosis: dict[str, Any]) -> None:
    assert not facts_of(definitions, diagnosis).holds("excess_weight")


@pytest.mark.parametrize(("value", "excess"), [(25.0, True), (24.99, False), (25, True)])
def test_excess_weight_threshold_is_25(definitions: FactDefinitions, value: float, excess: bool) -> None:
    assert facts_of(definitions, bmi(value, "2024-01-01")).holds("excess_weight") is excess


def test_computed_bmi_from_newest_weight_and_height(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        weight(70, "2023-01-01"),
        weight(80, "2024-05-01", resource_id="w"),
        height(175, "2023-06-01", resource_id="h"),
    )
    fact = facts.facts["bmi"]
    assert fact.holds and fact.values == {"bmi": 26.1, "source": "computed"}  # 80 / 1.75^2 = 26.12
    assert [e.reference for e in fact.evidence] == ["Observation/w", "Observation/h"]
    assert [e.value for e in fact.evidence] == ["80 kg", "175 cm"]
    assert facts.facts["excess_weight"].values == {"bmi": 26.1}


def test_computed_bmi_needs_both_within_730_days(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(80, days_ago(10)), height(175, days_ago(731)), condition(OBESITY))
    assert not facts.holds("bmi")
    assert facts.facts["excess_weight"].evidence[0].resource_type == "Condition"  # the fallback


def test_a_measured_bmi_comes_before_a_computed_one(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, bmi(24.0, "2023-01-01"), weight(100, "2024-06-01"), height(170, "2024-06-01"))
    assert facts.facts["bmi"].values == {"bmi": 24.0, "source": "measured"}
    assert not facts.holds("excess_weight")


def test_pounds_and_inches_are_converted(definitions: FactDefinitions) -> None:
    pounds = load_fixture("hl7-r4-examples/observation-example.json")  # 185 [lb_av], 2016-03-28
    inches = load_fixture("hl7-r4-examples/observation-example-body-height.json")  # 66.9 [in_i], 1999-07-02
    inches_2016 = {**inches, "id": "height-2016", "effectiveDateTime": "2016-03-28"}
    example = patient("example", birth="1974-12-25")
    facts = facts_of(definitions, example, pounds, inches_2016, patient_id="example", today=date(2017, 1, 1))
    assert facts.skipped == ()
    fact = facts.facts["bmi"]
    # 185 lb = 83.91 kg; 66.9 in = 1.699 m; 83.91 / 1.699^2 = 29.06
    assert fact.values == {"bmi": 29.1, "source": "computed"}
    assert [e.value for e in fact.evidence] == ["185 lbs (83.9 kg)", "66.9 in (169.9 cm)"]
    assert fact.evidence[0].label == "Body Weight (LOINC 29463-7)"
    # The real height example alone is from 1999: outside the window on 2017-01-01.
    assert not facts_of(definitions, example, pounds, inches, patient_id="example", today=date(2017, 1, 1)).holds("bmi")
    # Without unit text of their own, the units read as a clinician writes them, not as UCUM codes.
    untitled = [{**reading, "valueQuantity": {k: v for k, v in reading["valueQuantity"].items() if k != "unit"}} for reading in (pounds, inches_2016)]
    facts = facts_of(definitions, example, *untitled, patient_id="example", today=date(2017, 1, 1))
    assert [e.value for e in facts.facts["bmi"].evidence] == ["185 lb (83.9 kg)", "66.9 in (169.9 cm)"]


def test_grams_and_metres(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions, observation("29463-7", 80000, "g", when="2024-05-01"), observation("8302-2", 1.6, "m", when="2024-05-01")
    )
    assert facts.facts["bmi"].values == {"bmi": 31.3, "source": "computed"}  # 80 / 1.6^2 = 31.25, half up


@pytest.mark.parametrize(
    "odd",
    [
        observation("29463-7", 120, None, when="2024-06-01", unit_text="lbs", resource_id="odd"),  # no UCUM code
        {**observation("29463-7", 120, None, when="2024-06-01", resource_id="odd"), "valueQuantity": {"value": 120, "unit": "lbs"}},
        observation("29463-7", 120, "[lb_us]", when="2024-06-01", resource_id="odd"),
        observation("29463-7", 120, "cm", when="2024-06-01", resource_id="odd"),  # a length for a weight
    ],
)
def test_a_weight_in_an_unknown_unit_is_ignored_not_guessed(definitions: FactDefinitions, odd: dict[str, Any]) -> None:
    facts = facts_of(definitions, weight(80, "2024-05-01", resource_id="w"), odd, height(175, "2024-05-01"))
    assert facts.facts["bmi"].values == {"bmi": 26.1, "source": "computed"}
    assert facts.facts["bmi"].evidence[0].reference == "Observation/w"
    assert len(facts.skipped) == 1 and facts.skipped[0].startswith("Observation/odd: ")


@pytest.mark.parametrize(
    "quantity",
    [
        {"value": 80, "system": "http://unitsofmeasure.org", "code": "kg"},
        {"value": 80, "code": "kg"},  # no system: a code counts
        {"value": 80, "unit": "kg"},  # unit text that is itself a UCUM code
    ],
)
def test_the_forms_of_an_accepted_unit(definitions: FactDefinitions, quantity: dict[str, Any]) -> None:
    reading = {**observation("29463-7", 80, None, when="2024-05-01", resource_id="w"), "valueQuantity": quantity}
    facts = facts_of(definitions, reading, height(175, "2024-05-01"))
    assert facts.skipped == () and facts.facts["bmi"].values == {"bmi": 26.1, "source": "computed"}
    assert facts.facts["bmi"].evidence[0].value == "80 kg"


def test_a_ucum_code_of_another_system_is_not_a_unit(definitions: FactDefinitions) -> None:
    reading = observation("29463-7", 80, None, when="2024-05-01", resource_id="w")
    reading["valueQuantity"] = {"value": 80, "system": "http://example.org/units", "code": "kg"}
    facts = facts_of(definitions, reading, height(175, "2024-05-01"))
    assert not facts.holds("bmi")
    assert facts.skipped == ("Observation/w: valueQuantity has no UCUM unit; ignored, not guessed",)


def test_weights_dated_near_year_one_are_compared_without_leaving_the_calendar(definitions: FactDefinitions) -> None:
    """Placeholder dates such as 0001-03-01 occur in EHR data; the 365-day window before one left the calendar (a 500)."""
    facts = facts_of(definitions, weight(80, "0001-01-01"), weight(90, "0001-03-01"))
    assert facts.holds("recent_weight_gain") and facts.facts["recent_weight_gain"].values["gain_percent"] == 12.5


def test_a_value_with_a_comparator_is_a_bound_not_a_reading(definitions: FactDefinitions) -> None:
    """A BMI "<25" says it is under 25: read as 25 it made excess weight hold, and the card said 25."""
    bound = bmi(25, "2024-05-01", resource_id="b")
    bound["valueQuantity"]["comparator"] = "<"
    facts = facts_of(definitions, bound, bmi(23, "2023-05-01"))
    assert facts.facts["bmi"].values == {"bmi": 23.0, "source": "measured"} and not facts.holds("excess_weight")
    assert facts.skipped == ("Observation/b: valueQuantity.comparator '<': not an exact value; ignored, not guessed",)


def test_a_weight_without_unit_is_ignored(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, observation("29463-7", 80, None, when="2024-05-01"), height(175, "2024-05-01"))
    assert not facts.holds("bmi")


def test_a_bmi_not_in_kg_per_m2_is_ignored(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, observation("39156-5", 95, "%", when="2024-05-01"))
    assert not facts.holds("bmi") and not facts.holds("excess_weight")


@pytest.mark.parametrize(("status", "usable"), [("final", True), ("amended", True), ("corrected", True), ("preliminary", False), ("registered", False), ("cancelled", False), ("entered-in-error", False), ("unknown", False)])
def test_only_final_amended_corrected_observations_are_usable(definitions: FactDefinitions, status: str, usable: bool) -> None:
    assert facts_of(definitions, bmi(27.0, "2024-05-01", status=status)).holds("bmi") is usable


def test_an_observation_without_a_value_is_not_usable(definitions: FactDefinitions) -> None:
    absent = observation("39156-5", None, None, when="2024-05-01", dataAbsentReason={"text": "refused"})
    facts = facts_of(definitions, bmi(26.0, "2023-05-01"), absent)
    assert facts.facts["bmi"].values == {"bmi": 26.0, "source": "measured"}


def test_same_instant_observations_use_the_lowest_value(definitions: FactDefinitions) -> None:
    at = "2024-05-01T10:00:00+00:00"
    facts = facts_of(definitions, bmi(26.0, at), bmi(24.5, at, resource_id="low"), bmi(27.0, "2024-05-01T09:00:00+00:00"))
    assert facts.facts["bmi"].values["bmi"] == 24.5
    assert facts.facts["bmi"].evidence[0].reference == "Observation/low"
    assert not facts.holds("excess_weight")


def test_two_weights_on_one_day_use_the_lowest(definitions: FactDefinitions) -> None:
    dressed = load_fixture("au-core-test-data/Observation-bodyweight-3.json")  # 77.3 kg, 2022-02-10
    undressed = load_fixture("au-core-test-data/Observation-bodyweight-3-clothing.json")  # 75.0 kg, same date
    person = load_fixture("au-core-test-data/Patient-baratz-toni.json")
    tall = height(175, "2022-02-10", subject="Patient/baratz-toni")
    facts = facts_of(definitions, person, dressed, undressed, tall, patient_id="baratz-toni", today=date(2022, 3, 1))
    assert facts.skipped == ()
    fact = facts.facts["bmi"]
    assert fact.values == {"bmi": 24.5, "source": "computed"}  # 75.0 / 1.75^2 = 24.49
    assert fact.evidence[0].reference == "Observation/bodyweight-3-clothing"


def test_the_hl7_bmi_example(definitions: FactDefinitions) -> None:
    example = load_fixture("hl7-r4-examples/observation-example-bmi.json")  # 16.2 kg/m2
    when = date.fromisoformat(example["effectiveDateTime"][:10])
    facts = facts_of(definitions, patient("example"), example, patient_id="example", today=when + timedelta(days=30))
    assert facts.facts["bmi"].values == {"bmi": 16.2, "source": "measured"}
    assert not facts.holds("excess_weight")


def test_an_invalid_newest_bmi_is_skipped_and_the_next_one_used(definitions: FactDefinitions) -> None:
    broken = bmi(35.0, "2024-06-01", resource_id="broken", subject="Patient/p1")
    broken["subject"] = "Patient/p1"  # a string where R4 has a Reference
    facts = facts_of(definitions, broken, bmi(23.0, "2024-01-01"))
    assert facts.facts["bmi"].values == {"bmi": 23.0, "source": "measured"}
    assert len(facts.skipped) == 1 and facts.skipped[0].startswith("Observation/broken: not valid FHIR R4: subject")


# --- weight gain ------------------------------------------------------------------------------


def test_weight_gain_of_5_percent_holds(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        weight(82, "2023-12-01"),
        weight(80, "2023-09-01", resource_id="low"),
        weight(84, "2024-06-01", resource_id="new"),
    )
    fact = facts.facts["recent_weight_gain"]
    assert fact.holds
    assert fact.values == {"gain_percent": 5.0, "newest_kg": 84.0, "lowest_kg": 80.0}
    assert [e.reference for e in fact.evidence] == ["Observation/new", "Observation/low"]


def test_weight_gain_under_5_percent_does_not_hold(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(80, "2023-09-01"), weight(83.9, "2024-06-01"))
    assert not facts.holds("recent_weight_gain")


@pytest.mark.parametrize(("days_before", "holds"), [(365, True), (366, False)])
def test_weight_gain_window_is_365_days_before_the_newest(definitions: FactDefinitions, days_before: int, holds: bool) -> None:
    newest = date(2024, 6, 1)
    earlier = (newest - timedelta(days=days_before)).isoformat()
    facts = facts_of(definitions, weight(80, earlier), weight(90, "2023-12-01"), weight(88, newest.isoformat()))
    # Against 80 kg (in the window) the gain is 10 %; against 90 kg alone there is none.
    assert facts.holds("recent_weight_gain") is holds


def test_weight_gain_compares_with_the_lowest_not_the_previous(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(80, "2023-08-01"), weight(86, "2024-01-01"), weight(85, "2024-06-01"))
    assert facts.facts["recent_weight_gain"].values["gain_percent"] == 6.3  # 85 / 80: 6.25 %, not 85 / 86


def test_weight_gain_needs_an_earlier_weight(definitions: FactDefinitions) -> None:
    assert not facts_of(definitions, weight(90, "2024-06-01")).holds("recent_weight_gain")


def test_weights_at_the_newest_instant_are_not_before_it(definitions: FactDefinitions) -> None:
    at = "2024-06-01T10:00:00+00:00"
    facts = facts_of(definitions, weight(84, at), weight(80, at))  # the newest is the lowest: 80
    assert not facts.holds("recent_weight_gain")


def test_an_earlier_weight_the_same_day_counts(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(80, "2024-06-01T08:00:00+00:00"), weight(84, "2024-06-01T18:00:00+00:00"))
    assert facts.holds("recent_weight_gain")


def test_weight_gain_across_units(definitions: FactDefinitions) -> None:
    earlier = observation("29463-7", 176, "[lb_av]", when="2024-01-01", unit_text="lbs")  # 79.83 kg
    facts = facts_of(definitions, earlier, weight(84, "2024-06-01"))
    assert facts.facts["recent_weight_gain"].values == {"gain_percent": 5.2, "newest_kg": 84.0, "lowest_kg": 79.8}


def test_weights_after_today_are_not_used(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, weight(80, "2024-05-01"), weight(90, "2024-06-17"))
    assert not facts.holds("recent_weight_gain")
    # Dated tomorrow: today in a clinic east of UTC; a time with an offset is due on its UTC date.
    assert facts_of(definitions, weight(80, "2024-05-01"), weight(90, "2024-06-16")).holds("recent_weight_gain")
    for later in ("2024-06-16T18:00:00-07:00", "2024-06-16T20:00:00Z"):
        assert not facts_of(definitions, weight(80, "2024-05-01"), weight(90, later)).holds("recent_weight_gain"), later
    assert facts_of(definitions, weight(80, "2024-05-01"), weight(90, "2024-06-16T08:00:00+09:00")).holds("recent_weight_gain")


def test_weight_gain_uses_the_other_weight_codes(definitions: FactDefinitions) -> None:
    facts = facts_of(
        definitions,
        observation("3141-9", 80, "kg", when="2024-01-01"),
        observation("8351-9", 84, "kg", when="2024-06-01"),
        observation("8306-3", 175, "cm", when="2024-06-01"),
    )
    assert facts.holds("recent_weight_gain") and facts.holds("bmi")


def test_a_weight_is_not_a_snomed_condition(definitions: FactDefinitions) -> None:
    # A Condition coded like an observation concept does not feed measurements.
    facts = facts_of(definitions, condition("27113001", SNOMED))
    assert not facts.holds("bmi")


def _dated(**dating: Any) -> dict[str, Any]:
    """A BMI of 27 dated by ``dating`` (effective[x] and issued) instead of effectiveDateTime."""
    reading = bmi(27.0, "2024-05-01", resource_id="b")
    del reading["effectiveDateTime"]
    reading.update(dating)
    return reading


@pytest.mark.parametrize(
    ("dating", "day"),
    [
        ({"effectiveInstant": "2024-05-02T10:00:00Z", "issued": "2024-05-09T10:00:00Z"}, date(2024, 5, 2)),
        ({"effectivePeriod": {"start": "2024-05-03"}, "issued": "2024-05-09T10:00:00Z"}, date(2024, 5, 3)),
        ({"effectivePeriod": {"end": "2024-05-04"}}, date(2024, 5, 4)),
        ({"issued": "2024-05-05T10:00:00Z"}, date(2024, 5, 5)),
    ],
)
def test_the_date_of_a_measurement(definitions: FactDefinitions, dating: dict[str, Any], day: date) -> None:
    facts = facts_of(definitions, _dated(**dating))
    assert facts.skipped == () and facts.facts["bmi"].evidence[0].date == day


def test_a_measurement_without_any_date_is_skipped(definitions: FactDefinitions) -> None:
    facts = facts_of(definitions, _dated())
    assert not facts.holds("bmi")
    assert facts.skipped == ("Observation/b: no effective date (effective[x] or issued)",)


def test_readings_of_one_encounter_share_its_time(definitions: FactDefinitions) -> None:
    at = "2024-05-01T10:00:00+02:00"  # read once for the three readings, each still dated by it
    facts = facts_of(definitions, weight(80, at, resource_id="w"), height(175, at, resource_id="h"), bmi(26.1, at, resource_id="b"))
    assert [(e.reference, e.date) for e in facts.facts["bmi"].evidence] == [("Observation/b", date(2024, 5, 1))]
    assert facts.facts["bmi"].values == {"bmi": 26.1, "source": "measured"}


def test_an_observation_coded_as_two_kinds_is_the_first_defined(definitions: FactDefinitions) -> None:
    # facts.yaml defines bmi before body_weight: a reading coded as both is a BMI, whatever the coding order.
    reading = bmi(27.0, "2024-05-01", resource_id="both")
    reading["code"] = {"coding": [{"system": LOINC, "code": "29463-7"}, {"system": LOINC, "code": "39156-5"}]}
    facts = facts_of(definitions, reading)
    assert facts.skipped == () and facts.facts["bmi"].values == {"bmi": 27.0, "source": "measured"}


def test_an_observation_of_no_defined_kind_is_not_read(definitions: FactDefinitions) -> None:
    reading = bmi(27.0, "2024-05-01", resource_id="other")
    reading["code"] = {"coding": [{"system": LOINC, "code": "8867-4"}]}  # heart rate
    reading["valueQuantity"] = {"value": -1}  # would be reported if it were read
    facts = facts_of(definitions, reading)
    assert facts.skipped == () and not facts.holds("bmi")
