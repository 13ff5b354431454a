"""FHIR data -> ``PatientFacts``: every fact of ``rules/facts.yaml``, with its evidence.

The fact kinds are implemented here; which concepts, statuses and thresholds each named fact
uses comes from the definitions. The meaning of each kind follows clinical-rules.md section 1
and its clarifications. Structurally broken FHIR never raises out of ``compute_facts``: an
invalid relevant resource is skipped and listed in ``PatientFacts.skipped``.

Time: "today" is an input, a UTC date. Data dated after it (an Observation, a Condition's onset)
did not exist yet on the evaluation date and is not used, so ``--as-of`` evaluates the past; dates
are as written, local to the clinic, so "after" means not yet due (``dates.When.due``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from service.fhir.dates import Moments, counted_date_text, first_day
from service.fhir.definitions import (
    AgeFactDefinition,
    BmiFactDefinition,
    ConditionAfterFactDefinition,
    ConditionFactDefinition,
    ExcessWeightFactDefinition,
    FactDefinitions,
    FamilyHistoryFactDefinition,
    RecentConditionFactDefinition,
    WeightGainFactDefinition,
)
from service.fhir.measurements import BmiResult, determine_bmi, weight_gain
from service.fhir.model import Evidence, Fact, PatientFacts
from service.fhir.records import (
    ConditionRecord,
    FamilyHistoryRecord,
    Measurement,
    PatientRecord,
    Unusable,
    read_condition,
    read_family_history,
    read_measurement,
    read_patient,
    says_deceased,
)
from service.fhir.resources import select_resources
from service.fhir.units import shown
from service.fhir.validation import ResourceValidator, ValidationMemo, WorkerThreadMemo

__all__ = ["compute_facts"]


@dataclass(slots=True)
class _Patient:
    """What the fact kinds read, for one patient on one day."""

    today: date
    record: PatientRecord | None
    conditions: list[ConditionRecord]  # newest onset first (sorted once, not per fact)
    family: list[FamilyHistoryRecord]
    measurements: dict[str, list[Measurement]]
    validator: ResourceValidator
    definitions: FactDefinitions
    bmi: dict[str, BmiResult | None] = field(default_factory=dict)  # bmi fact name -> result
    # id(measurement) -> its evidence: the bmi and excess_weight facts show the same readings (4.6 us each)
    shown: dict[int, Evidence] = field(default_factory=dict)
    # The concepts the usable / the active conditions are coded as: a fact about none of them is
    # decided without walking the conditions (most facts of a chart; 0.2 us a fact).
    usable_concepts: set[str] = field(init=False, default_factory=set)
    active_concepts: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        for condition in self.conditions:
            if condition.usable:
                self.usable_concepts.update(condition.labels)
            if condition.active:
                self.active_concepts.update(condition.labels)

    def valid(self, measurement: Measurement) -> bool:
        return self.validator.valid(measurement.resource)  # type: ignore[arg-type]

    def evidence(self, measurement: Measurement) -> Evidence:
        found = self.shown.get(id(measurement))  # the measurements live as long as self: ids are stable
        if found is None:
            found = measurement.evidence(self.definitions.matcher, self.definitions.concepts)
            self.shown[id(measurement)] = found
        return found

    def conditions_in(self, concepts: Sequence[str], status: str) -> list[ConditionRecord]:
        """Conditions coded as one of ``concepts`` that are usable / active, newest onset first."""
        active = status == "active"
        if (self.active_concepts if active else self.usable_concepts).isdisjoint(concepts):
            return []
        return [  # self.conditions is in that order already
            condition
            for condition in self.conditions
            if (condition.active if active else condition.usable) and not condition.labels.keys().isdisjoint(concepts)
        ]


def _newest_onset_first(condition: ConditionRecord) -> tuple[int, str]:
    """Newest onset first, unknown onsets last; ties by id, so the input order never matters."""
    return (-(condition.onset or date.min).toordinal(), condition.resource_id or "")


def compute_facts(
    data: Iterable[dict[str, Any]],
    *,
    patient_id: str | None,
    today: date,
    definitions: FactDefinitions,
    memo: ValidationMemo | WorkerThreadMemo | None = None,
) -> PatientFacts:
    """Every fact of ``definitions`` about one patient on ``today``.

    ``data``: resources and Bundles of any type, in any mix (a prefetch's values, a file).
    With ``patient_id``, resources about another patient are ignored; without it, the first
    Patient in the data is the patient. Never raises on bad FHIR; see ``PatientFacts.skipped``.
    ``memo``: validation outcomes remembered across calls (the service keeps one).
    """
    matcher = definitions.matcher
    selection = select_resources(
        data,
        patient_id=patient_id,
        matcher=matcher,
        condition_concepts=definitions.condition_concepts,
        member_concepts=definitions.member_concepts,
        observation_concepts=definitions.observation_concepts,
    )
    validator = ResourceValidator(memo)
    record = None
    if selection.patient is not None and validator.valid(selection.patient):
        record = read_patient(selection.patient)
    # For onsetAge: a partial birth date counts as its first day, as every partial date of an onset
    # does (clinical-rules.md 1); its last day is the youngest *age*, which is another question.
    birth = first_day(record.birth_date_text) if record else None
    conditions = [
        read_condition(
            resource, matcher=matcher, concepts=definitions.concepts, statuses=definitions.statuses,
            birth=birth, today=today,
        )
        for resource in selection.conditions
        if validator.valid(resource)
    ]
    family: list[FamilyHistoryRecord] = []
    for resource in selection.family_histories:
        if validator.valid(resource):
            member = read_family_history(
                resource, matcher=matcher, concepts=definitions.concepts, statuses=definitions.statuses
            )
            if member is not None:  # None: entered-in-error
                family.append(member)
    patient = _Patient(
        today=today,
        record=record,
        # A Condition whose onset is after the evaluation date had not happened yet.
        conditions=sorted(
            (c for c in conditions if c.onset_due is None or c.onset_due <= today), key=_newest_onset_first
        ),
        family=family,
        measurements=_measurements(selection.observations, definitions, validator),
        validator=validator,
        definitions=definitions,
    )
    facts: dict[str, Fact] = {}
    for name, definition in definitions.facts.items():
        facts[name] = _KINDS[definition.kind](name, definition, patient)
    return PatientFacts(
        patient_id=selection.patient_id,
        today=today,
        deceased=selection.patient is not None and says_deceased(selection.patient),
        facts=facts,
        skipped=validator.skipped,
    )


def _measurements(
    observations: Iterable[tuple[str, dict[str, Any]]], definitions: FactDefinitions, validator: ResourceValidator
) -> dict[str, list[Measurement]]:
    """Readable measurements by observation definition; the unreadable relevant ones noted."""
    found: dict[str, list[Measurement]] = {name: [] for name in definitions.observations}
    moments = Moments()
    observations_defined, accepted_units, statuses = definitions.observations, definitions.accepted_units, definitions.statuses
    for name, resource in observations:
        result = read_measurement(resource, name, observations_defined[name], accepted_units[name], statuses, moments)
        if isinstance(result, Unusable):
            if validator.valid(resource):  # when invalid, the validator has said why
                validator.skip(resource, str(result))
        elif result is not None:
            found[name].append(result)
    return found


# --- the fact kinds ---------------------------------------------------------------------------


def _fact(name: str, evidence: Sequence[Evidence], values: Mapping[str, str | int | float] | None = None) -> Fact:
    """A fact that holds when it has evidence."""
    if not evidence:  # most facts of a chart do not hold: decided without building anything (0.4 us a fact)
        return Fact(name, False)
    found = tuple(dict.fromkeys(evidence))  # one entry per resource, first occurrence first
    return Fact(name, True, found, dict(values or {}))


def _older_age(name: str, definition: AgeFactDefinition, patient: _Patient) -> Fact:
    record = patient.record
    if record is None or record.birth_date is None:
        return Fact(name, False)  # no birth date: no age-based fact holds
    birth, today = record.birth_date, patient.today
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    if age < 0 or age < definition.parameters.older_age_years:
        return Fact(name, False)
    # A partial birth date says which day the age counts from: "Birth date 1970 (counted as 1970-12-31)"
    label = f"Birth date {counted_date_text(record.birth_date_text, birth) or record.birth_date_text}"
    evidence = Evidence("Patient", record.resource_id, label, birth, f"age {age}")
    return _fact(name, [evidence], {"age": age})


def _condition(name: str, definition: ConditionFactDefinition, patient: _Patient) -> Fact:
    found = patient.conditions_in(definition.concepts, definition.status)
    return _fact(name, [c.evidence(definition.concepts) for c in found])


def _recent_condition(name: str, definition: RecentConditionFactDefinition, patient: _Patient) -> Fact:
    days = definition.parameters.recent_injury_days
    found = [
        c
        for c in patient.conditions_in(definition.concepts, definition.status)
        # No upper bound here: a later onset was dropped as not yet happened.
        if c.onset is not None and c.onset >= patient.today - timedelta(days=days)
    ]
    return _fact(name, [c.evidence(definition.concepts) for c in found], {"window_days": days})


def _condition_after(name: str, definition: ConditionAfterFactDefinition, patient: _Patient) -> Fact:
    days = definition.parameters.post_injury_window_days
    priors = [c for c in patient.conditions_in(definition.after.concepts, definition.after.status) if c.onset]
    evidence: list[Evidence] = []
    for complaint in patient.conditions_in(definition.concepts, definition.status):
        if complaint.onset is None:
            continue  # no onset: satisfies no timing clause
        causes = [p for p in priors if p.onset is not None and 0 <= (complaint.onset - p.onset).days <= days]
        if causes:
            evidence.append(complaint.evidence(definition.concepts))
            evidence.extend(p.evidence(definition.after.concepts) for p in causes)
    return _fact(name, evidence, {"window_days": days})


def _bmi_result(fact_name: str, definition: BmiFactDefinition, patient: _Patient) -> BmiResult | None:
    if fact_name not in patient.bmi:
        patient.bmi[fact_name] = determine_bmi(
            bmis=patient.measurements[definition.bmi],
            weights=patient.measurements[definition.weight],
            heights=patient.measurements[definition.height],
            today=patient.today,
            window_days=definition.parameters.bmi_window_days,
            valid=patient.valid,
        )
    return patient.bmi[fact_name]


def _bmi(name: str, definition: BmiFactDefinition, patient: _Patient) -> Fact:
    result = _bmi_result(name, definition, patient)
    if result is None:
        return Fact(name, False)
    values = {"bmi": float(shown(result.value)), "source": result.source}
    return _fact(name, [patient.evidence(m) for m in result.evidence], values)


def _excess_weight(name: str, definition: ExcessWeightFactDefinition, patient: _Patient) -> Fact:
    bmi_definition = patient.definitions.facts[definition.bmi_fact]
    if not isinstance(bmi_definition, BmiFactDefinition):  # load_fact_definitions refuses this
        raise TypeError(f"fact '{name}': bmi_fact '{definition.bmi_fact}' is not a bmi fact")
    result = _bmi_result(definition.bmi_fact, bmi_definition, patient)
    if result is not None:  # a BMI in the window decides, whatever the date of a diagnosis
        if result.value < definition.parameters.overweight_bmi:
            return Fact(name, False)
        return _fact(name, [patient.evidence(m) for m in result.evidence], {"bmi": float(shown(result.value))})
    found = patient.conditions_in(definition.concepts, definition.status)
    return _fact(name, [c.evidence(definition.concepts) for c in found])


def _weight_gain(name: str, definition: WeightGainFactDefinition, patient: _Patient) -> Fact:
    gain = weight_gain(
        patient.measurements[definition.weight],
        today=patient.today,
        window_days=definition.parameters.weight_gain_window_days,
        valid=patient.valid,
    )
    if gain is None or gain.percent < definition.parameters.weight_gain_percent:
        return Fact(name, False)
    values = {
        "gain_percent": float(shown(gain.percent)),
        "newest_kg": float(shown(gain.newest.value)),
        "lowest_kg": float(shown(gain.lowest.value)),
    }
    return _fact(name, [patient.evidence(gain.newest), patient.evidence(gain.lowest)], values)


def _family_history(name: str, definition: FamilyHistoryFactDefinition, patient: _Patient) -> Fact:
    members = set(definition.member_concepts)
    family = sorted(
        (record for record in patient.family if members.intersection(record.labels)),
        key=lambda record: (-(record.recorded or date.min).toordinal(), record.resource_id or ""),
    )
    evidence = [record.evidence(definition.member_concepts) for record in family]
    evidence.extend(c.evidence(definition.concepts) for c in patient.conditions_in(definition.concepts, definition.status))
    return _fact(name, evidence)


_KINDS: dict[str, Callable[[str, Any, _Patient], Fact]] = {
    "age_at_least": _older_age,
    "condition": _condition,
    "recent_condition": _recent_condition,
    "condition_after": _condition_after,
    "bmi": _bmi,
    "excess_weight": _excess_weight,
    "weight_gain": _weight_gain,
    "family_history": _family_history,
}
