"""The typed result of the facts layer: what the rule engine sees of a patient.

The engine never sees FHIR JSON; it sees named facts (``older_age``, ``back_complaint`` ...),
each saying whether it holds and which resources make it hold, so every card can explain itself.
The fact names and their meaning are defined as data in ``rules/facts.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

__all__ = ["Dated", "Evidence", "Fact", "PatientFacts"]

# What an evidence date is: a Condition's onset or the day it was recorded, an Observation's
# effective (measured) or issued time, a FamilyMemberHistory's recorded date.
Dated = Literal["onset", "recorded", "measured", "issued"]


# The facts layer's per-call values are not frozen dataclasses, though nothing changes them once
# built: a frozen one sets each field through object.__setattr__, and a call builds tens of them
# (typical call: 5.082 -> 5.033 M instructions for Evidence, 4.951 with the others). Evidence is
# hashed all the same: calls deduplicate it.
@dataclass(slots=True, unsafe_hash=True)
class Evidence:
    """One resource a fact rests on."""

    resource_type: str
    resource_id: str | None
    label: str  # what it is, for a clinician: "Osteoarthritis of knee (SNOMED 239873007)"
    date: date | None = None  # onset, effective or recorded date, whichever the fact used ...
    value: str | None = None  # "27.9 kg/m2", "89.7 kg"
    # Which date it is, for the card, and how the card shows it when not as its day ("2011 (counted
    # as 2011-01-01)", "at age 50 (2010-03-01)"). Both follow from the resource and the date: left
    # out of equality and hashing, which deduplicate evidence on every call.
    dated: Dated | None = field(default=None, compare=False)
    day_shown: str | None = field(default=None, compare=False)

    @property
    def reference(self) -> str | None:
        """``Type/id`` as a FHIR relative reference, when the resource has an id."""
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else None


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class Fact:
    """A named fact about the patient on the evaluation date."""

    name: str
    holds: bool
    evidence: tuple[Evidence, ...] = ()
    # Values a card may name: {"age": 62}, {"bmi": 27.9}, {"gain_percent": 6.2}, ...
    values: Mapping[str, str | int | float] = field(default_factory=dict)


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class PatientFacts:
    """Every defined fact for one patient, plus what could not be used."""

    patient_id: str | None
    today: date
    deceased: bool
    facts: Mapping[str, Fact]
    # Relevant resources skipped because they failed validation ("Observation/x: ...").
    skipped: tuple[str, ...] = ()

    def holds(self, name: str) -> bool:
        fact = self.facts.get(name)
        return fact is not None and fact.holds
