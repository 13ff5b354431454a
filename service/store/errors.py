"""Errors of the store room; what SQLAlchemy raises is translated here, at one edge."""

from __future__ import annotations

__all__ = ["StoreUnavailable", "DatabaseUnreachable", "FeedbackMismatch", "MigrationError"]


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the write; nothing was stored.

    The feedback route answers 503 so the EHR retries (interface.md section 4).
    """


class DatabaseUnreachable(StoreUnavailable):
    """No connection could be made (server down, wrong host, database missing, file not openable)."""


class FeedbackMismatch(ValueError):
    """A feedback item contradicts the card it names (another service's card, a suggestion the card
    never had); nothing of the request was stored. The route answers 400 with this message."""


class MigrationError(Exception):
    """A migration script failed against a reachable database; its message says which and why."""
