"""Suppressions: a rule silenced for one patient after a suppressing override.

clinical-rules.md section 3: feedback ``overridden`` with ``already-addressed`` or
``patient-declined`` silences that rule for that patient for the rule's ``suppress_days``;
stored in the database, so it survives restarts. A reason is a Coding: only those codes in the
catalogue's override-reason system suppress, not a code an EHR's own reasons happen to share.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.store.database import as_utc
from service.store.tables import Suppression

__all__ = ["SUPPRESSES_NOTHING", "SuppressionPolicy", "suppression_window", "insert_suppression", "active_suppressions"]

_SUPPRESSION = Suppression.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SuppressionPolicy:
    """Which overrides silence which rules, and for how long: the catalogue's (rules/catalogue.yaml,
    interface.md decision 7), which the app passes to the Store."""

    suppress_days: Mapping[str, int]
    suppressing_reasons: Collection[str]
    reason_system: str

    def days(self, rule_id: str, outcome: str, reason_system: str | None, reason_code: str | None) -> int:
        """How many days an item with this outcome and reason silences ``rule_id``; 0 for none."""
        if outcome != "overridden" or reason_system != self.reason_system or reason_code not in self.suppressing_reasons:
            return 0
        return max(self.suppress_days.get(rule_id, 0), 0)


# A Store built without the catalogue's policy (the store's own tests, tools) silences nothing.
SUPPRESSES_NOTHING = SuppressionPolicy(suppress_days={}, suppressing_reasons=frozenset(), reason_system="")


def suppression_window(outcome_timestamp: datetime, received_at: datetime, days: int) -> tuple[date, date]:
    """``(starts_on, ends_before)``: the rule is silent on ``days`` dates from the outcome date (UTC).

    An outcome timestamp later than the day the feedback arrived counts from the arrival
    date, so a client's clock (or a typo) cannot stretch a suppression into the future.
    """
    starts_on = min(as_utc(outcome_timestamp).date(), as_utc(received_at).date())
    try:
        ends_before = starts_on + timedelta(days=days)
    except OverflowError:
        ends_before = date.max
    return starts_on, ends_before


def insert_suppression(
    connection: sa.Connection, *, patient_hash: str, rule_id: str, window: tuple[date, date], feedback_id: int
) -> None:
    starts_on, ends_before = window
    connection.execute(
        sa.insert(_SUPPRESSION).values(
            patient_hash=patient_hash, rule_id=rule_id, starts_on=starts_on, ends_before=ends_before, feedback_id=feedback_id
        )
    )


# Built once with bind parameters: every hook call runs this query, and building the statement
# per call cost twice its execution (0.14 -> 0.05 ms per lookup on SQLite, make bench).
_ACTIVE_SUPPRESSIONS = (
    sa.select(_SUPPRESSION.c.rule_id)
    .where(_SUPPRESSION.c.patient_hash == sa.bindparam("patient_hash"))
    .where(_SUPPRESSION.c.ends_before > sa.bindparam("on"))
    .where(_SUPPRESSION.c.starts_on <= sa.bindparam("on"))
    .distinct()
)


def active_suppressions(engine: Engine, patient_hash: str, on: date) -> frozenset[str]:
    """Rule ids silenced for this patient on ``on``."""
    with engine.connect() as connection:
        return frozenset(connection.execute(_ACTIVE_SUPPRESSIONS, {"patient_hash": patient_hash, "on": on}).scalars())
