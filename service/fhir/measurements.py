"""BMI and weight gain from Observations (clinical-rules.md section 1 and its clarifications).

- BMI: the newest usable BMI within the window; else computed from the newest usable weight
  and the newest usable height, both within the window.
- Same-instant Observations of one kind: the lowest value is used.
- Weight gain: the newest weight against the lowest weight dated at or after (newest - window)
  and strictly before the newest.

Observations are validated here, lazily: only the ones a result is about to rest on, newest
(or lowest) first, so a long weight history costs a few validations, not one per reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from service.fhir.records import Measurement

__all__ = ["BmiResult", "WeightGain", "determine_bmi", "newest_within", "weight_gain"]

_Valid = Callable[[Measurement], bool]


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class BmiResult:
    value: Decimal  # kg/m2, unrounded
    source: str  # "measured" or "computed"
    evidence: tuple[Measurement, ...]  # the BMI Observation, or the weight and the height


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class WeightGain:
    newest: Measurement
    lowest: Measurement
    percent: Decimal  # (newest - lowest) / lowest * 100, unrounded


def _newest_first(measurements: Iterable[Measurement]) -> list[Measurement]:
    """Newest instant first; at one instant, the lowest value first; then by id (order-free)."""
    ordered = sorted(measurements, key=_instant, reverse=True)
    if all(newer.when.instant != older.when.instant for newer, older in pairwise(ordered)):
        return ordered  # no two at one instant: values and ids decide nothing, so none is converted
    by_id = sorted(ordered, key=lambda m: m.resource_id or "")
    return sorted(by_id, key=lambda m: (m.when.instant, -m.value), reverse=True)


def _instant(measurement: Measurement) -> datetime:
    return measurement.when.instant


def _first_valid(candidates: Iterable[Measurement], valid: _Valid) -> Measurement | None:
    for measurement in candidates:
        if valid(measurement):
            return measurement
    return None


def newest_within(
    measurements: Sequence[Measurement], *, since: date, today: date, valid: _Valid
) -> Measurement | None:
    """The newest valid measurement dated ``since`` or later that has happened by ``today``."""
    in_window = [m for m in measurements if since <= m.when.day and m.when.due <= today]
    return _first_valid(_newest_first(in_window), valid) if in_window else None


def determine_bmi(
    *,
    bmis: Sequence[Measurement],
    weights: Sequence[Measurement],
    heights: Sequence[Measurement],
    today: date,
    window_days: int,
    valid: _Valid,
) -> BmiResult | None:
    """The patient's BMI on ``today``, or None when none can be determined."""
    since = today - timedelta(days=window_days)
    measured = newest_within(bmis, since=since, today=today, valid=valid)
    if measured is not None:
        return BmiResult(measured.value, "measured", (measured,))
    weight = newest_within(weights, since=since, today=today, valid=valid)
    height = newest_within(heights, since=since, today=today, valid=valid)
    if weight is None or height is None:
        return None
    return BmiResult(weight.value / (height.value * height.value), "computed", (weight, height))


def weight_gain(
    weights: Sequence[Measurement], *, today: date, window_days: int, valid: _Valid
) -> WeightGain | None:
    """The newest weight (on or before today) against the lowest of the window before it.

    None when there is no newest weight or no earlier weight in the window.
    """
    known = [m for m in weights if m.when.due <= today]
    newest = _first_valid(_newest_first(known), valid)
    if newest is None:
        return None
    try:
        since = newest.when.day - timedelta(days=window_days)
    except OverflowError:  # a placeholder date near year 1: the window reaches the calendar's start
        since = date.min
    earlier = [m for m in known if m.when.instant < newest.when.instant and m.when.day >= since]
    # Lowest first; among equal values the newest, then by id (so input order never matters).
    earlier.sort(key=lambda m: (m.value, -m.when.instant.timestamp(), m.resource_id or ""))
    lowest = _first_valid(earlier, valid)
    if lowest is None:
        return None
    return WeightGain(newest, lowest, (newest.value - lowest.value) * 100 / lowest.value)
