"""The audit trail: every hook call and the cards it issued, written off the response path.

``AuditQueue`` is a bounded FIFO filled by the route (``put`` returns at once); ``AuditWriter``
drains it in batches, one transaction per batch. While the database is down records wait in
the queue and are written when it returns. When the queue is full the *incoming* record is
dropped and counted: a record once accepted is never discarded to make room, so what is
queued is a complete stretch of history and the loss is a counted gap at its end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.store.connection import Database
from service.store.database import as_utc, clean_text, insert_or_skip, is_transient, reason_of
from service.store.feedback import apply_late_feedback
from service.store.records import InvocationRecord, PendingCard
from service.store.suppressions import SUPPRESSES_NOTHING, SuppressionPolicy
from service.store.tables import CardIssued, Invocation

__all__ = ["AUDIT_LINGER_SECONDS", "AuditQueue", "AuditWriter", "write_invocations"]

log = logging.getLogger("service.store")

# How long the writer lets records gather before writing a batch. One transaction per hook
# call cost 0.43 ms of CPU per record on SQLite, one per 32 records 0.055 ms (plus a worker-
# thread hop per batch): at the bench's rates this wait turns single-record batches into tens.
# Off the response path, so it only delays when a record is visible in the database (feedback
# on a card still queued is matched from the queue); a full batch or close() ends it early.
AUDIT_LINGER_SECONDS = 0.05

_INVOCATION = Invocation.__table__  # type: ignore[attr-defined]
_CARD = CardIssued.__table__  # type: ignore[attr-defined]


class AuditQueue:
    """Invocation records not yet written, oldest first, with an index of their cards.

    Only the event loop touches it, so it needs no lock. ``capacity`` counts records in the
    queue plus the batch being written.
    """

    def __init__(self, capacity: int, *, batch_size: int = 500, on_lost: Callable[[int], None] | None = None) -> None:
        self.capacity = capacity
        self._batch_size = max(1, batch_size)
        self.lost = 0
        self._on_lost = on_lost
        self._waiting: deque[InvocationRecord] = deque()
        self._in_flight: list[InvocationRecord] = []
        self._cards: dict[str, tuple[PendingCard, InvocationRecord]] = {}
        self._overflowing = False

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    @property
    def batch_ready(self) -> bool:
        """True when the next batch is full already (or a failed one waits to be retried)."""
        return bool(self._in_flight) or len(self._waiting) >= self._batch_size

    def put(self, record: InvocationRecord) -> bool:
        """Queue a record; False (and counted lost) when the queue is full."""
        if len(self) >= self.capacity:
            if not self._overflowing:
                log.warning(
                    "audit queue full: dropping new audit records until it drains",
                    extra={"fields": {"capacity": self.capacity, "setting": "CDS_AUDIT_QUEUE_SIZE"}},
                )
                self._overflowing = True
            self.count_lost(1)
            return False
        self._waiting.append(record)
        for card in record.cards:
            pending = PendingCard(record.service_id, card.rule_id, record.patient_hash, card.suggestion_uuids)
            self._cards[card.uuid] = (pending, record)
        return True

    def card(self, uuid: str) -> PendingCard | None:
        entry = self._cards.get(uuid)
        return entry[0] if entry else None

    def batch(self) -> list[InvocationRecord]:
        """The batch to write next: the unfinished one after a failure, so nothing is skipped."""
        if not self._in_flight:
            while self._waiting and len(self._in_flight) < self._batch_size:
                self._in_flight.append(self._waiting.popleft())
        return self._in_flight

    def written(self, records: Sequence[InvocationRecord], *, lost: bool = False) -> None:
        """Forget records that are stored (or given up on): their cards are in the database now."""
        done = {id(record) for record in records}
        self._in_flight = [record for record in self._in_flight if id(record) not in done]
        for record in records:
            for card in record.cards:
                entry = self._cards.get(card.uuid)
                if entry is not None and entry[1] is record:
                    del self._cards[card.uuid]
        if lost:
            self.count_lost(len(records))
        if self._overflowing and len(self) < self.capacity:
            log.warning("audit queue accepting records again", extra={"fields": {"lost_total": self.lost}})
            self._overflowing = False

    def count_lost(self, count: int) -> None:
        self.lost += count
        if self._on_lost is not None:
            self._on_lost(count)


def write_invocations(
    engine: Engine, records: Sequence[InvocationRecord], policy: SuppressionPolicy = SUPPRESSES_NOTHING, *, after_failure: bool = False
) -> None:
    """Insert invocations and their cards in one transaction (a card uuid already stored is kept).

    Feedback that reached another replica before these cards were written is then about a known
    card: ``apply_late_feedback`` says so and, under ``policy``, suppresses as it would have.
    ``after_failure``: an earlier try of these records failed, maybe after its commit (a lost
    acknowledgement): records it stored are not written twice."""
    with engine.begin() as connection:
        if after_failure:
            records = _not_yet_written(connection, records)
            if not records:
                return
        ids = (
            connection.execute(
                sa.insert(_INVOCATION).returning(_INVOCATION.c.id, sort_by_parameter_order=True),
                [_invocation_row(record) for record in records],
            )
            .scalars()
            .all()
        )
        cards = [
            {
                "uuid": clean_text(card.uuid),
                "invocation_id": invocation_id,
                "rule_id": clean_text(card.rule_id),
                "rule_version": clean_text(card.rule_version),
                "indicator": clean_text(card.indicator),
                "evidence": [clean_text(reference) for reference in card.evidence],
                "suggestion_uuids": [clean_text(uuid) for uuid in card.suggestion_uuids],
                "patient_hash": record.patient_hash,
            }
            for record, invocation_id in zip(records, ids, strict=True)
            for card in record.cards
        ]
        if cards:
            connection.execute(insert_or_skip(connection, _CARD, ["uuid"]), cards)
            services = {invocation_id: clean_text(record.service_id) for record, invocation_id in zip(records, ids, strict=True)}
            written = {card["uuid"]: PendingCard(services[card["invocation_id"]], card["rule_id"], card["patient_hash"]) for card in cards}
            apply_late_feedback(connection, written, policy)


def _not_yet_written(connection: sa.Connection, records: Sequence[InvocationRecord]) -> list[InvocationRecord]:
    """``records`` minus those already stored: a call is its service, hookInstance and the
    microsecond it was received (an EHR's retry of a call is received later).

    Looked up by the batch's span of ``received_at`` (indexed; seconds wide), not by hookInstance
    (not indexed: a scan that grows with the table, and past the statement timeout never ends)."""
    stored: set[tuple[str, str, datetime]] = set()
    columns = (_INVOCATION.c.service_id, _INVOCATION.c.hook_instance, _INVOCATION.c.received_at)
    received = [as_utc(record.received_at) for record in records]
    span = _INVOCATION.c.received_at.between(min(received), max(received))
    for service_id, hook_instance, received_at in connection.execute(sa.select(*columns).where(span)):
        stored.add((service_id, hook_instance, as_utc(received_at)))
    return [
        record
        for record in records
        if (clean_text(record.service_id), clean_text(record.hook_instance), as_utc(record.received_at)) not in stored
    ]


def _invocation_row(record: InvocationRecord) -> dict[str, object]:
    return {
        "service_id": clean_text(record.service_id),
        "hook": clean_text(record.hook),
        "hook_instance": clean_text(record.hook_instance),
        "patient_hash": record.patient_hash,
        "status": record.status,
        "duration_ms": record.duration_ms,
        "catalogue_version": clean_text(record.catalogue_version),
        "received_at": as_utc(record.received_at),
        "skipped_resources": [clean_text(reference) for reference in record.skipped_resources],
    }


class AuditWriter:
    """Drains an ``AuditQueue`` into the database in the background.

    A transient failure (database down, schema not there yet) keeps the batch and waits for the
    database; a failure about the data splits the batch into single records, and a record that
    fails alone is logged and counted lost, so one bad record never blocks the trail.
    """

    def __init__(
        self,
        queue: AuditQueue,
        database: Database,
        *,
        retry_seconds: float,
        linger_seconds: float = AUDIT_LINGER_SECONDS,
        policy: SuppressionPolicy = SUPPRESSES_NOTHING,
    ) -> None:
        self._queue = queue
        self._policy = policy
        self._database = database
        self._retry_seconds = retry_seconds
        self._linger_seconds = linger_seconds
        self._wakeup = asyncio.Event()
        self._flush = asyncio.Event()  # ends a linger: the batch is full, or closing
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # The write in progress and its records: it runs on in its thread if the writer is
        # cancelled at shutdown, and may still commit (then its records are not lost).
        self._writing: tuple[asyncio.Task[None], list[InvocationRecord]] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-audit-writer")

    def wake(self) -> None:
        self._wakeup.set()
        if self._queue.batch_ready:
            self._flush.set()

    @property
    def failure(self) -> str | None:
        """Why the writer stopped, if it stopped before being closed (a bug: it fails readiness)."""
        if self._task is None or not self._task.done() or self._task.cancelled():
            return None
        exc = self._task.exception()
        return None if exc is None else f"audit writer stopped: {reason_of(exc)}"

    async def close(self, *, timeout_seconds: float) -> None:
        """Write what is queued, waiting at most ``timeout_seconds``; count the rest lost."""
        self._closing = True
        self._wakeup.set()
        self._flush.set()
        if self._task is None:
            remaining = len(self._queue)
        else:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_seconds)
            except TimeoutError:
                pass
            except Exception:  # the writer died of a bug; its traceback was logged by _run
                pass
            if not self._task.done():
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
                await self._settle_cancelled_write()
            remaining = len(self._queue)
        if remaining:
            log.error(
                "audit records not written at shutdown",
                extra={"fields": {"records": remaining, "reason": self._database.problem or "timed out"}},
            )
            self._queue.count_lost(remaining)

    async def _run(self) -> None:
        try:
            await self._drain_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit writer stopped")
            raise

    async def _drain_forever(self) -> None:
        one_by_one = False
        after_failure = False  # the last try failed: it may have committed before the error reached us
        while True:
            await self._linger()
            batch = self._queue.batch()
            if not batch:
                if self._closing:
                    return
                one_by_one = False
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not self._database.usable:
                await self._database.wait_usable()
                continue
            part = batch[:1] if one_by_one else list(batch)
            write = asyncio.ensure_future(
                self._database.run(functools.partial(write_invocations, after_failure=after_failure), part, self._policy)
            )
            self._writing = (write, part)  # until it is settled here; a cancelled writer leaves it to close()
            try:
                await asyncio.shield(write)
            except sa.exc.SQLAlchemyError as exc:
                self._writing = None
                after_failure = True
                if is_transient(exc):
                    await asyncio.sleep(self._retry_seconds)
                elif len(part) > 1:
                    one_by_one = True
                else:
                    log.error(
                        "audit record could not be stored; dropped",
                        extra={"fields": {"hookInstance": part[0].hook_instance[:64], "reason": reason_of(exc)}},
                    )
                    self._queue.written(part, lost=True)
                continue
            self._writing = None
            after_failure = False
            self._queue.written(part)

    async def _settle_cancelled_write(self) -> None:
        """After cancelling the writer: wait (bounded) for the write it left running; its records
        count as written if it committed, so shutdown does not report stored records as lost."""
        if self._writing is None:
            return
        write, part = self._writing
        self._writing = None
        await asyncio.wait({write}, timeout=self._database.connect_timeout_seconds + 1)
        if write.done() and not write.cancelled() and write.exception() is None:
            self._queue.written(part)
        elif not write.done():
            write.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: no warning later

    async def _linger(self) -> None:
        """Let records gather into one batch, unless it is full already or the writer is closing."""
        if self._closing or self._linger_seconds <= 0 or not len(self._queue) or self._queue.batch_ready:
            return
        self._flush.clear()
        try:
            await asyncio.wait_for(self._flush.wait(), self._linger_seconds)
        except TimeoutError:
            pass
