"""FHIR dates as the facts use them: partial dates, offsets, and timezone-less datetimes.

Real data carries ``2024``, ``2024-03``, ``2024-03-01``, ``2024-03-01T10:00:00+02:00`` and,
from systems that drop the offset, ``2024-03-01T10:00:00``. The rules (clinical-rules.md
section 1) read a partial date as its first day and a partial *birth* date as its last
possible day. A date or datetime belongs to the calendar day written in it: the chart's day,
the one clinicians see on a card. Instants (which of two readings is newer) are UTC, and a
datetime without an offset is read as UTC. "Today" is a UTC date, while a clinic east of UTC
is already on the next day: a date, or a time without an offset, has happened once today
reaches the day before it (``When.due``); a time with an offset, once today reaches its UTC date.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from service.fhir.units import UCUM_SYSTEM

__all__ = [
    "Moments",
    "When",
    "add_age",
    "age_text",
    "birth_date",
    "counted_date_text",
    "day_when",
    "first_day",
    "parse_when",
    "partial_date_text",
    "with_timezones",
]

# Digits spelt out (\d\d, not \d{2}): a counted repeat costs the regex engine a loop per field,
# and every dateTime of every relevant resource is matched (0.53 -> 0.39 us a dateTime).
_DATE = re.compile(r"(\d\d\d\d)(?:-(\d\d)(?:-(\d\d))?)?")
_DATETIME = re.compile(r"\d\d\d\d-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")
# A datetime with no offset or no seconds (or neither): what R4 validation refuses and some
# EHRs send anyway (Java's OffsetDateTime prints "2024-03-01T10:00Z").
_LAX_DATETIME = re.compile(r"(\d\d\d\d-\d\d-\d\dT\d\d:\d\d)(:\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)?")


@dataclass(slots=True, order=True)  # not frozen: that triples the cost of building one (0.45 -> 0.15 us)
class When:
    """A point in time from FHIR: the instant (UTC) orders events, the day (as written) is what
    windows count and cards show, and ``due`` is the first UTC date on which it has surely
    happened: it counts on an evaluation date ("today") from ``due`` on.

    Not changed once read.
    """

    instant: datetime
    day: date
    due: date


def day_when(day: date) -> When:
    """A FHIR date (no time, so no time zone): due a day early, when UTC+14 is already on it."""
    return When(datetime(day.year, day.month, day.day, tzinfo=UTC), day, _day_before(day))


def _day_before(day: date) -> date:
    return day if day == date.min else day - timedelta(days=1)


def parse_when(value: object) -> When | None:
    """A FHIR date or dateTime; a partial date is its first day. None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "T" not in text:  # only a dateTime has one: the date pattern is not tried on dateTimes (0.3 us)
        day = _date_day(text)
        return None if day is None else day_when(day)
    return _datetime_when(text)


def _date_day(text: str, last: bool = False) -> date | None:
    """A FHIR date (``2024``, ``2024-03``, ``2024-03-09``), stripped: its first day, or with
    ``last`` its last possible day."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    try:
        if len(text) == 10 and text.isascii():  # a full date, read in C (0.3 us less than three ints)
            return date.fromisoformat(text)
        year_text, month_text, day_text = match.groups()
        year = int(year_text)
        if not last:
            return date(year, int(month_text or 1), int(day_text or 1))
        month = int(month_text) if month_text else 12
        return date(year, month, int(day_text) if day_text else calendar.monthrange(year, month)[1])
    except ValueError:  # month 13, day 32, or a year outside what date() allows
        return None


def _datetime_when(text: str) -> When | None:
    """A FHIR dateTime with a time, stripped."""
    if not _DATETIME.fullmatch(text):
        return None
    try:
        # The pattern keeps to FHIR's forms; within them Python 3.11 reads exactly what FHIR means
        # (digits past microseconds dropped, Z as UTC), in C: a fifth of the cost of building it here.
        written = datetime.fromisoformat(text)
        moment = (written.replace(tzinfo=UTC) if written.tzinfo is None else written).astimezone(UTC)
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, 23:59:60, an offset of 24 h or more
        return None
    day = written.date()
    # With an offset the moment is known, and it has happened once its UTC date is today.
    return When(moment, day, moment.date() if written.tzinfo is not None else _day_before(day))


class Moments(dict[str, "When | None"]):
    """``parse_when`` for one call, each distinct text read once.

    A chart's weight, height and BMI share their encounter's time: of the typical call's 27
    Observation dates, 9 are distinct (a parse is 0.7 us, a lookup 0.05 us). Kept for one call
    only; a ``When`` is not changed once read, so readings may share one.
    """

    __slots__ = ()

    def __missing__(self, text: str) -> When | None:
        when = self[text] = parse_when(text)
        return when

    def of(self, value: object) -> When | None:
        """As ``parse_when(value)``."""
        return self[value] if isinstance(value, str) else None


def first_day(value: object) -> date | None:
    """The (first) day of a FHIR date or dateTime."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "T" not in text:
        return _date_day(text)  # no instant built for a date: 1.4 -> 0.4 us
    when = _datetime_when(text)
    return None if when is None else when.day


def birth_date(value: object) -> date | None:
    """``Patient.birthDate``; a partial one counts as its last possible day (the youngest age)."""
    return _date_day(value.strip(), True) if isinstance(value, str) else None


# UCUM codes of the time units an Age may use, as days per unit (years and months are added
# as calendar units when whole).
_AGE_DAYS: dict[str, Decimal] = {
    "a": Decimal("365.25"),
    "mo": Decimal("30.4375"),
    "wk": Decimal(7),
    "d": Decimal(1),
    "h": Decimal(1) / Decimal(24),
    "min": Decimal(1) / Decimal(1440),
}


def partial_date_text(value: object) -> str | None:
    """A partial FHIR date as written ("2011", "2011-03"), for a card to show instead of the first day
    it counts as; None for a whole date or dateTime."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if len(text) < 10 and _date_day(text) is not None else None


def counted_date_text(value: object, counted_as: date) -> str | None:
    """A partial FHIR date as written, and the day it counts as: "2011 (counted as 2011-01-01)". A
    card says both, so a reader can check a window counted from it. None for a whole date."""
    written = partial_date_text(value)
    return None if written is None else f"{written} (counted as {counted_as.isoformat()})"


_AGE_WORDS = {"mo": "months", "wk": "weeks", "d": "days", "h": "hours", "min": "minutes"}


def age_text(age: dict[str, Any]) -> str:
    """A FHIR Age that ``add_age`` read, as a clinician says it: "age 50", "age 6 months"."""
    value, code = age.get("value"), age.get("code")
    return f"age {value}" if code == "a" else f"age {value} {_AGE_WORDS.get(str(code), code)}"


def add_age(birth: date, age: dict[str, Any]) -> date | None:
    """The day a patient born on ``birth`` reached ``age`` (a FHIR Age), or None if unreadable.

    For ``Condition.onsetAge`` (clinical-rules.md: "onsetAge added to the birth date").
    Whole years and months are calendar years and months; fractions fall back to days.
    """
    value = age.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    system = age.get("system")
    code = age.get("code")
    if not isinstance(code, str) or (system is not None and system != UCUM_SYSTEM):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if amount < 0 or code not in _AGE_DAYS or not amount.is_finite():
        return None
    try:
        if code in ("a", "mo") and amount == amount.to_integral_value():
            months = int(amount) * (12 if code == "a" else 1)
            year, month = divmod(birth.month - 1 + months, 12)
            year += birth.year
            day = min(birth.day, calendar.monthrange(year, month + 1)[1])
            return date(year, month + 1, day)
        return birth + timedelta(days=int(amount * _AGE_DAYS[code]))
    except (ValueError, OverflowError):
        return None


# JSON nested deeper than this is not FHIR anyone writes; it is left as it is (and validation
# judges it) rather than walked into a RecursionError.
_MAX_DEPTH = 64


def with_timezones(node: Any, _depth: int = 0) -> Any:
    """``node`` with every offset-less dateTime given ``Z``, and every one without seconds ``:00``,
    for R4 validation.

    FHIR R4 requires both on a dateTime with a time; fhir.resources enforces it. Facts read an
    offset-less value as UTC (``parse_when``), so validation sees the same reading. Returns
    ``node`` itself when nothing needed changing (the common case: no copy).
    """
    if isinstance(node, str):
        match = _LAX_DATETIME.fullmatch(node)
        if match:
            minutes, seconds, offset = match.groups()
            if seconds is None or offset is None:
                return f"{minutes}{seconds or ':00'}{offset or 'Z'}"
        return node
    if _depth > _MAX_DEPTH:
        return node
    if isinstance(node, dict):
        changed: dict[Any, Any] | None = None
        for key, item in node.items():
            fixed = with_timezones(item, _depth + 1)
            if fixed is not item:
                if changed is None:
                    changed = dict(node)
                changed[key] = fixed
        return node if changed is None else changed
    if isinstance(node, list):
        items = [with_timezones(item, _depth + 1) for item in node]
        if any(new is not old for new, old in zip(items, node, strict=True)):
            return items
        return node
    return node
