"""FHIR dates: partial dates, offsets, timezone-less datetimes, birth dates, ages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from service.fhir.dates import Moments, add_age, birth_date, first_day, parse_when, with_timezones


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2024", date(2024, 1, 1)),
        ("2024-03", date(2024, 3, 1)),
        ("2024-03-09", date(2024, 3, 9)),
        ("2024-03-09T10:00:00+02:00", date(2024, 3, 9)),
        ("2024-03-09T01:00:00+02:00", date(2024, 3, 9)),  # the day as written, the chart's (UTC: 03-08)
        ("2024-03-09T23:30:00-05:00", date(2024, 3, 9)),  # (UTC: 03-10)
        ("2024-03-09T10:00:00Z", date(2024, 3, 9)),
        ("2024-03-09T10:00:00", date(2024, 3, 9)),  # no offset: read as UTC
        ("2024-03-09T10:00", date(2024, 3, 9)),
        ("2024-03-09T10:00:00.123456789Z", date(2024, 3, 9)),
    ],
)
def test_first_day(text: str, day: date) -> None:
    assert first_day(text) == day


@pytest.mark.parametrize(
    "text",
    [
        "", "yesterday", "2024-13", "2024-02-30", "2024-03-09T25:00:00Z", "20240309", None, 2024,
        "2024-03-09 10:00:00Z", "2024-03-09T10:00:00+24:00", "2024-03-09T23:59:60Z", "2024-W10",
        "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00",  # before year 1 / after 9999 in UTC
    ],
)
def test_not_a_date(text: object) -> None:
    assert parse_when(text) is None


@pytest.mark.parametrize(
    "value",
    ["2024", "2024-03-09T10:00:00+02:00", "2024-03-09T10:00:00", "", "2024-02-30", "yesterday", None, 2024, ["2024"]],
)
def test_moments_read_as_parse_when(value: object) -> None:
    moments = Moments()
    assert moments.of(value) == parse_when(value)
    assert moments.of(value) is moments.of(value)  # read once per call


@pytest.mark.parametrize(
    "value",
    ["2024", "2024-03", "2024-03-09", " 2024-03-09 ", "2024-02-29", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01",
     "2024-03-09T10:00:00+02:00", "2024-03-09T01:00:00+02:00", "2024-3-9", "", None, 20240309],
)
def test_first_day_is_the_day_of_parse_when(value: object) -> None:
    # first_day reads a date without building its instant: the same day, or the same None.
    when = parse_when(value)
    assert first_day(value) == (when.day if when else None)


def test_digits_past_microseconds_are_dropped() -> None:
    when = parse_when("2024-03-09T10:00:00.1234567-01:30")
    assert when is not None and when.instant == datetime(2024, 3, 9, 11, 30, 0, 123456, tzinfo=UTC)


def test_instants_order_events_across_offsets() -> None:
    early = parse_when("2024-03-09T10:00:00+02:00")
    late = parse_when("2024-03-09T09:00:00Z")
    assert early is not None and late is not None
    assert early.instant < late.instant
    assert early.instant == datetime(2024, 3, 9, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("1970", date(1970, 12, 31)),
        ("1970-02", date(1970, 2, 28)),
        ("1972-02", date(1972, 2, 29)),
        ("1970-07-04", date(1970, 7, 4)),
    ],
)
def test_partial_birth_date_is_its_last_possible_day(text: str, day: date) -> None:
    assert birth_date(text) == day


@pytest.mark.parametrize("text", [None, "", "1970-13", "1970-02-30", "unknown"])
def test_unreadable_birth_date_is_unknown(text: object) -> None:
    assert birth_date(text) is None


@pytest.mark.parametrize(
    ("age", "day"),
    [
        ({"value": 45, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"}, date(2005, 2, 28)),
        ({"value": 6, "system": "http://unitsofmeasure.org", "code": "mo"}, date(1960, 8, 29)),
        ({"value": 10, "code": "d"}, date(1960, 3, 10)),
        ({"value": 2, "code": "wk"}, date(1960, 3, 14)),
    ],
)
def test_add_age(age: dict[str, object], day: date) -> None:
    assert add_age(date(1960, 2, 29), age) == day


@pytest.mark.parametrize(
    "age",
    [
        {"value": 45, "code": "years"},
        {"value": 45, "system": "http://snomed.info/sct", "code": "a"},
        {"value": -1, "code": "a"},
        {"value": "45", "code": "a"},
        {"value": True, "code": "a"},
        {"code": "a"},
        {"value": 1e300, "code": "a"},
    ],
)
def test_unreadable_age_gives_no_date(age: dict[str, object]) -> None:
    assert add_age(date(1960, 1, 1), age) is None


def test_with_timezones_fixes_only_datetimes_without_offset_or_seconds() -> None:
    resource = {
        "onsetDateTime": "2024-03-09T10:00:00",
        "recordedDate": "2024-03-09T10:00",
        "note": [{"time": "2024-03-09T10:00:00+02:00"}, {"time": "2024-03-09T10:00+02:00"}, {"time": "2024-03-09T10:00Z"}],
        "abatementString": "2024",
    }
    fixed = with_timezones(resource)
    assert fixed == {
        "onsetDateTime": "2024-03-09T10:00:00Z",
        "recordedDate": "2024-03-09T10:00:00Z",
        # Seconds left out with an offset kept (Java's OffsetDateTime prints these).
        "note": [{"time": "2024-03-09T10:00:00+02:00"}, {"time": "2024-03-09T10:00:00+02:00"}, {"time": "2024-03-09T10:00:00Z"}],
        "abatementString": "2024",
    }
    assert resource["onsetDateTime"] == "2024-03-09T10:00:00"  # the input is not changed


def test_with_timezones_returns_the_same_object_when_nothing_changes() -> None:
    resource = {"a": [{"b": "2024-03-09T10:00:00Z"}], "c": 1}
    assert with_timezones(resource) is resource
