"""FHIR JSON -> the small records the facts are computed from (one reader per resource type).

Readers work on the raw JSON (validated by the caller, except Observations, which are
validated only when a fact is about to rest on them), and stay defensive: every field is
type-checked before use, so odd data makes a field unknown, never an exception.
Definitions: clinical-rules.md section 1 (usable, active, onset, age, deceased).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from service.fhir.codes import CodeMatcher
from service.fhir.dates import (
    Moments,
    When,
    add_age,
    age_text,
    birth_date,
    counted_date_text,
    day_when,
    first_day,
    parse_when,
    partial_date_text,
)
from service.fhir.definitions import ObservationDefinition, Statuses
from service.fhir.model import Dated, Evidence
from service.fhir.units import UCUM_SYSTEM, Unit, quantity_unit_code, shown
from service.fhir.valuesets import Concept

__all__ = [
    "ConditionRecord",
    "FamilyHistoryRecord",
    "Measurement",
    "PatientRecord",
    "Unusable",
    "pick_label",
    "read_condition",
    "read_family_history",
    "read_measurement",
    "read_patient",
    "says_deceased",
]

_Resource = Mapping[str, Any]

# A JSON object: dict first, so the usual case is decided without the Mapping ABC's 0.2 us check.
_JSON_OBJECT = (dict, Mapping)
_NUMBER = (int, float, Decimal)  # a tuple: "int | float | Decimal" in the call builds a union each time
_INFINITY = float("inf")

# How a measured quantity is shown to a clinician (values are computed in kg, m, kg/m2).
_SHOWN_IN = {"mass": ("kg", Decimal(1)), "length": ("cm", Decimal(100)), "body_mass_index": ("kg/m2", Decimal(1))}


def _string(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _states_anything(codeable: object) -> bool:
    """A CodeableConcept (JSON) with text, or with a coding that has a code or a display."""
    if not isinstance(codeable, _JSON_OBJECT):
        return False
    if _string(codeable.get("text")):
        return True
    codings = codeable.get("coding")
    return isinstance(codings, list) and any(
        isinstance(coding, _JSON_OBJECT) and (_string(coding.get("code")) or _string(coding.get("display"))) for coding in codings
    )


def _codes(codeable: object) -> set[str]:
    """The codes of a CodeableConcept (JSON), whatever their system."""
    if not isinstance(codeable, _JSON_OBJECT):
        return set()
    codings = codeable.get("coding")
    if not isinstance(codings, list):
        return set()
    return {coding["code"] for coding in codings if isinstance(coding, _JSON_OBJECT) and isinstance(coding.get("code"), str)}


def _labels(
    codeable: object, matcher: CodeMatcher, concepts: Mapping[str, Concept], prefix: str = ""
) -> dict[str, str]:
    """concept -> what a clinician reads: "Osteoarthritis of knee (SNOMED 239873007)".

    The coding's display when present, else the CodeableConcept's text, else the concept label.
    """
    text = _string(codeable.get("text")) if isinstance(codeable, _JSON_OBJECT) else None
    labels: dict[str, str] = {}
    for coding in matcher.codings(codeable):
        for concept in sorted(coding.concepts):
            if concept not in labels:
                shown = coding.display or text or (concepts[concept].label if concept in concepts else concept)
                labels[concept] = f"{prefix}{shown} ({coding.system} {coding.code})"
    return labels


def pick_label(labels: Mapping[str, str], wanted: Iterable[str]) -> str:
    """The label for the first of ``wanted`` (a fact's concepts, in order) that is labelled."""
    for concept in wanted:
        if concept in labels:
            return labels[concept]
    return next(iter(labels.values()), "")


# --- Patient ----------------------------------------------------------------------------------


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class PatientRecord:
    resource_id: str | None
    birth_date: date | None  # a partial birth date is its last possible day
    birth_date_text: str | None  # as written: "1970", "1970-05-01"


def read_patient(resource: _Resource) -> PatientRecord:
    """Birth date. Absent or masked birth date (``_birthDate`` only) -> unknown. Deceased is read
    by ``says_deceased``, from the Patient whether or not it is valid."""
    birth_text = _string(resource.get("birthDate"))
    resource_id = resource.get("id")
    return PatientRecord(
        resource_id=resource_id if isinstance(resource_id, str) else None,
        birth_date=birth_date(birth_text),
        birth_date_text=birth_text,
    )


def says_deceased(resource: _Resource) -> bool:
    """``deceasedBoolean`` true or any ``deceasedDateTime`` (clinical-rules.md 1), read from the JSON
    as sent: also for a Patient that fails validation, which gets no card all the same."""
    return resource.get("deceasedBoolean") is True or resource.get("deceasedDateTime") is not None


# --- Condition --------------------------------------------------------------------------------


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class ConditionRecord:
    resource_id: str | None
    labels: Mapping[str, str]  # concept -> label; its keys are the concepts it is coded as
    usable: bool
    active: bool
    onset: date | None  # as written
    onset_due: date | None  # the first evaluation date it has happened on (``When.due``)
    onset_dated: Dated | None = None  # "onset", or "recorded" when only recordedDate dates it
    # How a card shows it when not as its day: "2011 (counted as 2011-01-01)", "at age 50 (2010-03-01)"
    onset_shown: str | None = None

    def evidence(self, concepts: Iterable[str]) -> Evidence:
        label = pick_label(self.labels, concepts)
        return Evidence("Condition", self.resource_id, label, self.onset, dated=self.onset_dated, day_shown=self.onset_shown)


def read_condition(
    resource: _Resource,
    *,
    matcher: CodeMatcher,
    concepts: Mapping[str, Concept],
    statuses: Statuses,
    birth: date | None,
    today: date,
) -> ConditionRecord:
    usable = not (_codes(resource.get("verificationStatus")) & statuses.condition_unusable_verification)
    clinical = resource.get("clinicalStatus")
    codes = _codes(clinical)
    # Absent, or coded active/recurrence/relapse (clinical-rules.md 1). A status given any other
    # way (only as text, or a coding with only a display) is not absent; an empty one ({} or no
    # codings) says nothing, as if absent. The usual coded status is decided by its codes alone.
    clinically_active = bool(codes & statuses.condition_active_clinical) if codes else not _states_anything(clinical)
    resource_id = resource.get("id")
    onset, dated, shown = _onset(resource, birth)
    return ConditionRecord(
        resource_id=resource_id if isinstance(resource_id, str) else None,
        labels=_labels(resource.get("code"), matcher, concepts),
        usable=usable,
        active=usable and clinically_active and not _abated(resource, today),
        onset=onset.day if onset else None,
        onset_due=onset.due if onset else None,
        onset_dated=dated,
        onset_shown=shown,
    )


_UNDATED: tuple[None, None, None] = (None, None, None)


def _onset(resource: _Resource, birth: date | None) -> tuple[When, Dated, str | None] | tuple[None, None, None]:
    """onsetDateTime, else onsetPeriod.start, else onsetAge added to the birth date, else
    recordedDate; which of them it is, and how a card shows it when not as its day (a partial date
    as written and the day windows count it as, an age as the age). A plain tuple: every Condition
    of every call is read here."""
    written = resource.get("onsetDateTime")
    onset = parse_when(written)
    if onset is None and isinstance(period := resource.get("onsetPeriod"), _JSON_OBJECT):
        written = period.get("start")
        onset = parse_when(written)
    if onset is not None:  # a whole date or dateTime is ten characters or more: no call for the usual case
        return onset, "onset", counted_date_text(written, onset.day) if len(written) < 10 else None
    age = resource.get("onsetAge")
    if isinstance(age, _JSON_OBJECT) and birth is not None:
        reached = add_age(birth, age)
        if reached is not None:  # a day worked out, not written: the card says how
            return day_when(reached), "onset", f"at {age_text(age)} ({reached.isoformat()})"
    written = resource.get("recordedDate")
    recorded = parse_when(written)
    return _UNDATED if recorded is None else (recorded, "recorded", counted_date_text(written, recorded.day))


def _abated(resource: _Resource, today: date) -> bool:
    """Any abatement[x]: a date on or before today, true, a string, an age, a started period.

    clinical-rules.md 1b: it makes a Condition not active whatever its clinicalStatus says.
    "On or before today" as for every date: from its ``When.due`` on.
    """
    for key, value in resource.items():
        if not key.startswith("abatement") or value is None:
            continue
        if key == "abatementDateTime":
            when = parse_when(value)
            if when is None or when.due <= today:  # an unreadable date is still an abatement
                return True
        elif key == "abatementBoolean":
            if value is True:
                return True
        elif key == "abatementPeriod":
            if isinstance(value, _JSON_OBJECT):
                start, end = parse_when(value.get("start")), parse_when(value.get("end"))
                if (start is not None and start.due <= today) or (start is None and end is not None and end.due <= today):
                    return True
        else:  # abatementString, abatementAge, abatementRange
            return True
    return False


# --- FamilyMemberHistory ----------------------------------------------------------------------


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class FamilyHistoryRecord:
    resource_id: str | None
    labels: Mapping[str, str]  # concept -> "Father: Osteoarthritis of knee (SNOMED 239873007)"
    recorded: date | None
    recorded_shown: str | None = None  # a partial date as written ("2020-05")

    def evidence(self, concepts: Iterable[str]) -> Evidence:
        label = pick_label(self.labels, concepts)
        recorded, shown = self.recorded, self.recorded_shown
        return Evidence("FamilyMemberHistory", self.resource_id, label, recorded, dated="recorded", day_shown=shown)


def read_family_history(
    resource: _Resource, *, matcher: CodeMatcher, concepts: Mapping[str, Concept], statuses: Statuses
) -> FamilyHistoryRecord | None:
    """None when its status excludes it (entered-in-error)."""
    status = resource.get("status")
    if isinstance(status, str) and status in statuses.family_history_excluded:
        return None
    relationship = _relationship(resource.get("relationship"))
    prefix = f"{relationship}: " if relationship else "Family member: "
    labels: dict[str, str] = {}
    conditions = resource.get("condition")
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, _JSON_OBJECT):
            for concept, label in _labels(condition.get("code"), matcher, concepts, prefix).items():
                labels.setdefault(concept, label)
    resource_id = resource.get("id")
    return FamilyHistoryRecord(
        resource_id=resource_id if isinstance(resource_id, str) else None,
        labels=labels,
        recorded=first_day(resource.get("date")),
        recorded_shown=partial_date_text(resource.get("date")),
    )


def _relationship(codeable: object) -> str | None:
    if not isinstance(codeable, _JSON_OBJECT):
        return None
    codings = codeable.get("coding")
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, _JSON_OBJECT):
            shown = _string(coding.get("display"))
            if shown:
                return shown[0].upper() + shown[1:]
    text = _string(codeable.get("text"))
    if text:
        return text
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, _JSON_OBJECT) and _string(coding.get("code")):
            return str(coding["code"]).strip()
    return None


# --- Observation ------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen one costs 1.8 us to build, 0.6 us otherwise, per reading
class Measurement:
    """A usable Observation value in its canonical unit (kg, m, kg/m2). Not changed once read."""

    resource: _Resource  # validated only when a fact is about to rest on it
    resource_id: str | None
    when: When
    number: int | float | Decimal  # the value as the resource writes it (a JSON number), in ...
    unit: Unit  # ... this UCUM unit, one its definition accepts (so of the definition's quantity)
    concept: str  # the observation's concept, for its label
    _value: Decimal | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def written(self) -> Decimal:
        """The value as written, exactly (a float as its shortest repr: 170.22193213503746)."""
        return Decimal(str(self.number))

    @property
    def value(self) -> Decimal:
        """In the canonical unit. Converted when first compared or shown, not when read: most readings
        of a history are only dated (Decimal(str(float)) is 0.45 us a reading)."""
        value = self._value
        if value is None:
            value = self._value = self.unit.to_canonical(self.written)
        return value

    def evidence(self, matcher: CodeMatcher, concepts: Mapping[str, Concept]) -> Evidence:
        """Labelled and shown only when used: most readings of a long history never are."""
        label = pick_label(_labels(self.resource.get("code"), matcher, concepts), (self.concept,))
        dated, day_shown = _dated_by(self.resource, self.when)
        return Evidence("Observation", self.resource_id, label, self.when.day, self.shown(), dated, day_shown)

    def shown(self) -> str:
        """As written, then in the unit clinicians read: "185 lbs (83.9 kg)"."""
        shown_unit, shown_factor = _SHOWN_IN[self.unit.quantity]
        unit_code = self.unit.code
        unit_text = _string(self.resource.get("valueQuantity", {}).get("unit"))
        written = f"{_number(self.written)} {unit_text or self.unit.label}"
        if unit_code == shown_unit:
            return written
        return f"{written} ({_number(self.value * shown_factor)} {shown_unit})"


class Unusable(str):
    """Why a relevant Observation cannot be used although it may be valid FHIR (kept for audit)."""


def read_measurement(  # called positionally per reading: keywords cost 0.1 us a call
    resource: _Resource,
    name: str,
    definition: ObservationDefinition,
    units: Mapping[str, Unit],
    statuses: Statuses,
    moments: Moments,
) -> Measurement | Unusable | None:
    """The measurement, or None when it is not usable (status, no value: normal), or Unusable(reason).

    ``units``: the definition's units by UCUM code (``FactDefinitions.accepted_units``).
    ``moments``: the dates already read in this call (weight, height and BMI share their encounter's).
    """
    status = resource.get("status")
    if not isinstance(status, str) or status not in statuses.observation_usable:
        return None
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, _JSON_OBJECT):
        return None
    number = quantity.get("value")
    if number is None:
        return None  # "with a value": a usable Observation has one
    problem = _number_problem(number)
    if problem is not None:
        return problem
    comparator = quantity.get("comparator")
    if comparator is not None:  # "<25" is a bound, not a BMI of 25
        return Unusable(f"valueQuantity.comparator '{comparator}': not an exact value; ignored, not guessed")
    code = quantity.get("code")
    # The usual Quantity, a UCUM system and an accepted code, decided by one probe (0.3 us a reading).
    unit = units.get(code) if isinstance(code, str) and quantity.get("system") == UCUM_SYSTEM else None
    if unit is None:
        unit_code = quantity_unit_code(quantity)
        if unit_code is None:
            return Unusable("valueQuantity has no UCUM unit; ignored, not guessed")
        unit = units.get(unit_code)
        if unit is None:
            accepted = ", ".join(definition.units)
            return Unusable(f"unit '{unit_code}' is not one accepted for {name} ({accepted}); ignored, not guessed")
    # effectiveDateTime first, here: the usual case without a call (0.15 us a reading). Which of
    # the two it was is worked out again (``_dated_by``) only for the readings a card shows.
    when = moments.of(resource.get("effectiveDateTime")) or _effective(resource, moments) or moments.of(resource.get("issued"))
    if when is None:
        return Unusable("no effective date (effective[x] or issued)")
    resource_id = resource.get("id")
    return Measurement(  # positional: keywords cost 0.1 us more per reading
        resource,
        resource_id if isinstance(resource_id, str) else None,
        when,
        number,
        unit,
        definition.concept,
    )


def _number_problem(number: object) -> Unusable | None:
    """Why a valueQuantity.value is not a measurement; decided on the JSON number itself (its Decimal
    is made when a fact uses it)."""
    if number.__class__ is float:  # the usual case first: one comparison chain (NaN compares false)
        positive = 0 < number < _INFINITY  # type: ignore[operator]
    elif isinstance(number, bool) or not isinstance(number, _NUMBER):
        return Unusable("valueQuantity.value is not a number")
    elif isinstance(number, Decimal):
        positive = number.is_finite() and number > 0
    else:
        positive = 0 < number < _INFINITY
    return None if positive else Unusable(f"value {number} is not a measurement (must be positive)")


def _dated_by(resource: _Resource, when: When) -> tuple[Dated, str | None]:
    """Whether a reading's date (``read_measurement``) is when it was measured or when it was issued,
    and how a card shows it when not as its day: "2020-05 (counted as 2020-05-01)"."""
    for written in _effective_dates(resource):
        if parse_when(written) is not None:
            return "measured", counted_date_text(written, when.day)
    return "issued", counted_date_text(resource.get("issued"), when.day)


def _effective(resource: _Resource, moments: Moments) -> When | None:
    """When it was measured: the first of ``_effective_dates`` that is a date."""
    for written in _effective_dates(resource):
        when = moments.of(written)
        if when is not None:
            return when
    return None


def _effective_dates(resource: _Resource) -> tuple[object, ...]:
    """effectiveDateTime, effectiveInstant, effectivePeriod.start and .end, as written, in that order."""
    period = resource.get("effectivePeriod")
    start, end = (period.get("start"), period.get("end")) if isinstance(period, _JSON_OBJECT) else (None, None)
    return resource.get("effectiveDateTime"), resource.get("effectiveInstant"), start, end


def _number(value: Decimal) -> str:
    """185 -> "185", 89.69184726596625 -> "89.7", 24.96 -> "24.96" (``units.shown``)."""
    if value == value.to_integral_value():
        return str(value.to_integral_value())
    return str(shown(value))
