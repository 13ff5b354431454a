"""Helpers for the store tests: read what the store wrote, wait for background work, build records."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from service.store import InvocationRecord, IssuedCard
from tests.support.scratch_postgres import ScratchPostgres  # the store tests import it from here too


@dataclass
class AbsentDatabase:
    """A database the service cannot open yet; ``appear()`` makes it exist (empty)."""

    url: str
    appear: Callable[[], None]


def rows(url: str, query: str, **params: Any) -> list[sa.Row[Any]]:
    """Read what the store wrote, with a connection of the test's own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query), params))
    finally:
        engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Wait until ``check()`` holds; fail the test after ``timeout`` seconds (a generous bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def invocation(
    *,
    service_id: str = "back-knee-risk-factors",
    hook_instance: str | None = None,
    patient_hash: str = "p" * 64,
    cards: tuple[IssuedCard, ...] = (),
    status: int = 200,
    skipped: tuple[str, ...] = (),
) -> InvocationRecord:
    return InvocationRecord(
        service_id=service_id,
        hook="patient-view",
        hook_instance=hook_instance or str(uuid.uuid4()),
        patient_hash=patient_hash,
        status=status,
        duration_ms=12.5,
        catalogue_version="1.0.0",
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        cards=cards,
        skipped_resources=skipped,
    )


# The suggestions every test card offers (feedback tests accept them by these ids).
SUGGESTIONS = ("s-1", "s-2", "s-3")


def card(rule_id: str = "weight-management", *, uuid_: str | None = None) -> IssuedCard:
    return IssuedCard(
        uuid=uuid_ or str(uuid.uuid4()),
        rule_id=rule_id,
        rule_version="1.2.0",
        indicator="info",
        evidence=("Condition/knee-oa", "Observation/bmi-1"),
        suggestion_uuids=SUGGESTIONS,
    )
