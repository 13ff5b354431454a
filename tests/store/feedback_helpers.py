"""Feedback records and a store that suppresses as a catalogue would: shared by the feedback and
suppression-cache tests."""

from __future__ import annotations

from datetime import UTC, datetime

from service.store import FeedbackRecord, Store, SuppressionPolicy
from tests.store.helpers import card, eventually, invocation

PATIENT = "a" * 64
OTHER_PATIENT = "b" * 64
OVERRIDDEN_AT = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
SUPPRESS_DAYS = {"weight-management": 90, "sciatica-guidance": 30, "acl-tear-surgical-referral": 90}
REASON_SYSTEM = "urn:back-knee-cds:override-reason"
POLICY = SuppressionPolicy(SUPPRESS_DAYS, frozenset({"already-addressed", "patient-declined"}), REASON_SYSTEM)
# The service the feedback helpers below send to; the test cards are issued by it unless a test says otherwise.
SERVICE = "back-knee-care-guidance"


def feedback_store(url: str, **options: object) -> Store:
    """A store whose feedback suppresses as a catalogue with ``SUPPRESS_DAYS`` says."""
    return Store(url, retry_seconds=0.05, suppression_policy=POLICY, **options)  # type: ignore[arg-type]


def overridden(card_uuid: str, reason: str = "already-addressed", **changes: object) -> FeedbackRecord:
    values: dict[str, object] = {
        "service_id": SERVICE,
        "card_uuid": card_uuid,
        "outcome": "overridden",
        "outcome_timestamp": OVERRIDDEN_AT,
        "override_reason_code": reason,
        "override_reason_system": "urn:back-knee-cds:override-reason",
        "user_comment": "discussed at the last visit",
    }
    values.update(changes)
    return FeedbackRecord(**values)  # type: ignore[arg-type]


def accepted(card_uuid: str, *suggestions: str) -> FeedbackRecord:
    return FeedbackRecord(
        service_id=SERVICE,
        card_uuid=card_uuid,
        outcome="accepted",
        outcome_timestamp=OVERRIDDEN_AT,
        accepted_suggestions=suggestions,
    )


async def issued(store: Store, rule_id: str = "weight-management", patient_hash: str = PATIENT, *, service_id: str = SERVICE) -> str:
    """A card the service issued, written to the database."""
    issued_card = card(rule_id)
    store.record_invocation(invocation(service_id=service_id, patient_hash=patient_hash, cards=(issued_card,)))
    await eventually(lambda: store.audit_backlog == 0)
    return issued_card.uuid
