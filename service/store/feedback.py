"""Feedback items: stored once each, with the card they are about and any suppression they cause.

interface.md decision 6: feedback about an unknown card is stored (``known_card`` false);
the same item sent again is stored once. An item's identity is a hash of what it says
(card, outcome, timestamp, reason, accepted suggestions, comment), kept unique by the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.store.database import as_utc, clean_text, in_chunks, insert_or_skip
from service.store.errors import FeedbackMismatch
from service.store.records import FeedbackOutcome, FeedbackRecord, PendingCard
from service.store.suppressions import SuppressionPolicy, insert_suppression, suppression_window
from service.store.tables import CardIssued, Feedback, Invocation

__all__ = ["apply_late_feedback", "feedback_identity", "reconcile_late_feedback", "store_feedback"]

_FEEDBACK = Feedback.__table__  # type: ignore[attr-defined]
_CARD = CardIssued.__table__  # type: ignore[attr-defined]
_INVOCATION = Invocation.__table__  # type: ignore[attr-defined]
# What feedback needs of a stored card, with the service that issued it (its invocation's).
_CARDS_WITH_ISSUER = sa.select(
    _CARD.c.uuid, _INVOCATION.c.service_id, _CARD.c.rule_id, _CARD.c.patient_hash, _CARD.c.suggestion_uuids
).join(_INVOCATION, _INVOCATION.c.id == _CARD.c.invocation_id)


def feedback_identity(record: FeedbackRecord) -> str:
    """SHA-256 of the item's content; the order of accepted suggestions does not matter."""
    content = [
        record.card_uuid,
        record.outcome,
        as_utc(record.outcome_timestamp).isoformat(timespec="microseconds"),
        record.override_reason_system,
        record.override_reason_code,
        sorted(record.accepted_suggestions),
        record.user_comment,
    ]
    return hashlib.sha256(orjson.dumps(content)).hexdigest()


def store_feedback(
    engine: Engine,
    records: Sequence[FeedbackRecord],
    *,
    pending_cards: Mapping[str, PendingCard],
    policy: SuppressionPolicy,
    received_at: datetime,
) -> list[FeedbackOutcome]:
    """Store every item in one transaction; returns only once it is committed.

    ``pending_cards``: cards whose audit record is still queued here (feedback can outrun the
    writer). A card queued on another replica is unknown for now; ``apply_late_feedback`` catches up.
    """
    outcomes: list[FeedbackOutcome] = []
    with engine.begin() as connection:
        cards = _cards(connection, {record.card_uuid for record in records})
        cards.update({uuid: card for uuid, card in pending_cards.items() if uuid not in cards})
        for record in records:
            card = cards.get(record.card_uuid)
            if card is not None:
                _check_against_card(record, card)  # raising rolls the whole request back
            feedback_id = connection.execute(
                insert_or_skip(connection, _FEEDBACK, ["identity"]).returning(_FEEDBACK.c.id),
                _feedback_row(record, known_card=card is not None, received_at=received_at),
            ).scalar_one_or_none()
            suppressed_rule = None
            if feedback_id is not None and card is not None:
                days = policy.days(card.rule_id, record.outcome, record.override_reason_system, record.override_reason_code)
                if _suppress(connection, card, days, record.outcome_timestamp, received_at, feedback_id):
                    suppressed_rule = card.rule_id
            outcomes.append(
                FeedbackOutcome(
                    card_uuid=record.card_uuid,
                    known_card=card is not None,
                    duplicate=feedback_id is None,
                    suppressed_rule=suppressed_rule,
                )
            )
    return outcomes


def apply_late_feedback(connection: sa.Connection, cards: Mapping[str, PendingCard], policy: SuppressionPolicy) -> int:
    """Feedback stored before ``cards`` were (it reached a replica whose queue did not hold them):
    mark it about a known card now, and suppress as it would have on arrival. Returns how many.

    Each item is taken over once, by whoever flips its ``known_card`` first (two replicas may try)."""
    late = sa.select(
        _FEEDBACK.c.id, _FEEDBACK.c.card_uuid, _FEEDBACK.c.service_id, _FEEDBACK.c.outcome, _FEEDBACK.c.override_reason_system,
        _FEEDBACK.c.override_reason_code, _FEEDBACK.c.outcome_timestamp, _FEEDBACK.c.received_at,
    ).where(_FEEDBACK.c.known_card.is_(False))
    taken = 0
    for chunk in in_chunks(cards):
        for feedback_id, uuid, service_id, outcome, reason_system, reason_code, outcome_timestamp, received_at in connection.execute(
            late.where(_FEEDBACK.c.card_uuid.in_(chunk))
        ).all():
            flipped = connection.execute(
                sa.update(_FEEDBACK).where(_FEEDBACK.c.id == feedback_id, _FEEDBACK.c.known_card.is_(False)).values(known_card=True)
            )
            if flipped.rowcount != 1:
                continue  # another replica took it over meanwhile
            card = cards[uuid]
            # Sent to a service that never showed the card: kept (it can no longer be refused), silences nothing.
            days = policy.days(card.rule_id, outcome, reason_system, reason_code) if service_id == card.service_id else 0
            _suppress(connection, card, days, outcome_timestamp, received_at, feedback_id)
            taken += 1
    return taken


# Feedback rows a first reconcile looks back over: it knows no earlier run's watermark.
_FIRST_LOOKBACK_ROWS = 10_000


def reconcile_late_feedback(
    engine: Engine, policy: SuppressionPolicy, *, after_id: int | None, limit: int = 1_000
) -> tuple[int, int]:
    """Feedback about an unknown card whose card has been stored since: what ``apply_late_feedback``
    misses when the feedback and the card are committed at the same moment on two replicas (neither
    transaction sees the other's row).

    Only feedback with an id above ``after_id`` (None: the last ``_FIRST_LOOKBACK_ROWS``) is read,
    an index range on the primary key: feedback about cards never stored (lost records, made-up
    uuids) piles up for ever, and a scan of all of it grew past the statement timeout. Returns how
    many items it took over, and the newest feedback id there was, for the caller's watermark."""
    with engine.begin() as connection:
        newest = connection.execute(sa.select(sa.func.max(_FEEDBACK.c.id))).scalar_one_or_none() or 0
        start = after_id if after_id is not None else newest - _FIRST_LOOKBACK_ROWS
        found = connection.execute(
            _CARDS_WITH_ISSUER.join(_FEEDBACK, _FEEDBACK.c.card_uuid == _CARD.c.uuid)
            .where(_FEEDBACK.c.id > start, _FEEDBACK.c.known_card.is_(False))
            .limit(limit)
        )
        cards = dict(_pending_cards(found))
        return (apply_late_feedback(connection, cards, policy) if cards else 0), newest


def _suppress(
    connection: sa.Connection, card: PendingCard, days: int, outcome_timestamp: datetime, received_at: datetime, feedback_id: int
) -> bool:
    """Silence the card's rule for its patient for ``days`` (none when 0); True when it did."""
    if days <= 0:
        return False
    window = suppression_window(outcome_timestamp, received_at, days)
    insert_suppression(connection, patient_hash=card.patient_hash, rule_id=card.rule_id, window=window, feedback_id=feedback_id)
    return True


def _cards(connection: sa.Connection, uuids: set[str]) -> dict[str, PendingCard]:
    found: dict[str, PendingCard] = {}
    for chunk in in_chunks(clean_text(uuid) for uuid in uuids):
        found.update(_pending_cards(connection.execute(_CARDS_WITH_ISSUER.where(_CARD.c.uuid.in_(chunk)))))
    return found


def _pending_cards(rows: Iterable[sa.Row[Any]]) -> Iterator[tuple[str, PendingCard]]:
    """``(uuid, card)`` of rows selected by ``_CARDS_WITH_ISSUER``."""
    for uuid, service_id, rule_id, patient_hash, suggestions in rows:
        yield uuid, PendingCard(service_id, rule_id, patient_hash, tuple(suggestions or ()))


def _check_against_card(record: FeedbackRecord, card: PendingCard) -> None:
    """Feedback naming a card this service never showed, or a suggestion the card never had, is a
    client error. The service is the one that issued it (the audit trail's), whatever today's
    catalogue says: a rule may have moved to another service since."""
    if card.service_id != record.service_id:
        raise FeedbackMismatch(
            f"card {record.card_uuid[:100]!r} was issued by service '{card.service_id}'; "
            f"send its feedback to /cds-services/{card.service_id}/feedback"
        )
    unknown = [suggestion for suggestion in record.accepted_suggestions if suggestion not in card.suggestion_uuids]
    if unknown:
        raise FeedbackMismatch(f"card {record.card_uuid[:100]!r} has no suggestion {unknown[0][:100]!r}")


def _feedback_row(record: FeedbackRecord, *, known_card: bool, received_at: datetime) -> dict[str, object]:
    def optional(value: str | None) -> str | None:
        return None if value is None else clean_text(value)

    return {
        "identity": feedback_identity(record),
        "card_uuid": clean_text(record.card_uuid),
        "service_id": clean_text(record.service_id),
        "outcome": clean_text(record.outcome),
        "accepted_suggestions": [clean_text(suggestion) for suggestion in record.accepted_suggestions],
        "override_reason_code": optional(record.override_reason_code),
        "override_reason_system": optional(record.override_reason_system),
        "user_comment": optional(record.user_comment),
        "outcome_timestamp": as_utc(record.outcome_timestamp),
        "known_card": known_card,
        "received_at": as_utc(received_at),
    }
