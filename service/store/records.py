"""What the service hands to the store: plain records, no HTTP or SQL types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["IssuedCard", "InvocationRecord", "FeedbackRecord", "FeedbackOutcome", "PendingCard"]


@dataclass(frozen=True, slots=True)
class IssuedCard:
    uuid: str
    rule_id: str
    rule_version: str
    indicator: str
    evidence: tuple[str, ...]  # "Condition/abc" references the card rests on; the patient as "Patient"
    suggestion_uuids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One hook call, written after the response is sent (the response never waits for it)."""

    service_id: str
    hook: str
    hook_instance: str
    patient_hash: str
    status: int
    duration_ms: float
    catalogue_version: str
    received_at: datetime
    cards: tuple[IssuedCard, ...] = ()
    skipped_resources: tuple[str, ...] = ()  # relevant resources that failed validation


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    service_id: str
    card_uuid: str
    outcome: str  # "accepted" | "overridden"
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason_code: str | None = None
    override_reason_system: str | None = None
    user_comment: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    """What storing one feedback item did, for metrics and the log."""

    card_uuid: str
    known_card: bool
    duplicate: bool
    suppressed_rule: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingCard:
    """What feedback needs about a card: the service that issued it, its rule, the patient it was
    about (hashed), its suggestions."""

    service_id: str
    rule_id: str
    patient_hash: str
    suggestion_uuids: tuple[str, ...] = ()
