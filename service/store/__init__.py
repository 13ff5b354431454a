"""Persistence: invocations, issued cards, feedback, suppressions and seen JWT ids.

sqlmodel tables (``tables``), Alembic migrations (``migrate``, ``migrations/`` at the root),
and the ``Store`` the app holds (``store``). The rest of the service sees only this package's
public names and the plain records of ``records``; no SQL type leaves the room.
"""

from __future__ import annotations

from service.store.database import describe_url
from service.store.errors import DatabaseUnreachable, FeedbackMismatch, MigrationError, StoreUnavailable
from service.store.migrate import upgrade_database, wait_for_database
from service.store.records import FeedbackOutcome, FeedbackRecord, InvocationRecord, IssuedCard
from service.store.store import Store
from service.store.suppressions import SuppressionPolicy

__all__ = [
    "Store",
    "StoreUnavailable",
    "DatabaseUnreachable",
    "FeedbackMismatch",
    "MigrationError",
    "describe_url",
    "SuppressionPolicy",
    "FeedbackOutcome",
    "FeedbackRecord",
    "InvocationRecord",
    "IssuedCard",
    "upgrade_database",
    "wait_for_database",
]
