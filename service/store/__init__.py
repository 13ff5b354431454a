"""Persistence: invocations, issued cards, feedback, suppressions and seen JWT ids.

SEAM (to be replaced by the real sqlmodel store): the interface the app relies on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from service.store.records import FeedbackOutcome, FeedbackRecord, InvocationRecord, IssuedCard

__all__ = [
    "Store",
    "StoreUnavailable",
    "FeedbackOutcome",
    "FeedbackRecord",
    "InvocationRecord",
    "IssuedCard",
]


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the write; nothing was stored."""


class Store:
    def __init__(self, database_url: str, *, queue_size: int = 10_000, retry_seconds: float = 1.0):
        self.database_url = database_url

    async def start(self) -> None:
        """Begin connecting in the background; never blocks start-up on the database."""

    async def close(self) -> None:
        """Flush queued audit records (bounded wait) and close connections."""

    async def check_ready(self) -> str | None:
        """None when the database answers, else the reason it does not."""
        return "store not implemented"

    def record_invocation(self, record: InvocationRecord) -> None:
        """Queue an invocation record; returns at once."""

    async def save_feedback(
        self, records: Sequence[FeedbackRecord], *, suppress_days: Mapping[str, int]
    ) -> list[FeedbackOutcome]:
        raise StoreUnavailable("store not implemented")

    async def suppressed_rules(self, patient_hash: str, on: date) -> frozenset[str]:
        return frozenset()

    async def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True the first time (issuer, jti) is seen; False for a replay."""
        raise StoreUnavailable("store not implemented")
