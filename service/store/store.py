"""``Store``: what the service asks of its database, none of it blocking the event loop.

The hook path never waits for the database and never fails because of it: audit records are
queued, suppressions read as "none" and JWT ids are remembered in memory while it is down.
Feedback is the exception by design: it is acknowledged only once committed, and
``StoreUnavailable`` (503, the EHR retries) is raised when it cannot be.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa

from service.store.audit import AuditQueue, AuditWriter
from service.store.connection import Database
from service.store.database import DEFAULT_CONNECT_TIMEOUT_SECONDS, is_transient, reason_of
from service.store.errors import StoreUnavailable
from service.store.feedback import reconcile_late_feedback, store_feedback
from service.store.records import FeedbackOutcome, FeedbackRecord, InvocationRecord, PendingCard
from service.store.replay import AcceptedJtis, MemoryJtis, flush_to_database, prune_expired, remember_in_database
from service.store.suppression_cache import SUPPRESSION_CACHE_SECONDS, SuppressionCache
from service.store.suppressions import SUPPRESSES_NOTHING, SuppressionPolicy, active_suppressions

__all__ = ["Store", "SUPPRESSION_READ_SECONDS"]

log = logging.getLogger("service.store")

_PRUNE_EVERY_SECONDS = 600.0
# Late feedback missed by a race between two replicas' commits is taken over within this long.
_RECONCILE_EVERY_SECONDS = 60.0
# Hook calls read suppressions on the response path. A database that has gone silent (a network
# partition: no error until libpq's tcp_user_timeout, 5 s) must not hold the chart that long;
# after this the call goes on without suppressions, as when the database is known to be down.
SUPPRESSION_READ_SECONDS = 1.0
# Every authenticated call records its JWT id first; past this the id is kept in memory instead,
# as while the database is down (README: "within a second").
REPLAY_CHECK_SECONDS = 1.0
# GET /health/ready answers within this (the image's HEALTHCHECK waits 4 s for it).
READY_CHECK_SECONDS = 2.0


class Store:
    """Persistence for one app: invocations, cards, feedback, suppressions, seen JWT ids.

    Build it in the lifespan, ``await start()``, ``await close()`` at shutdown. ``on_audit_lost``
    hears how many audit records were dropped (queue full, unstorable, or unwritten at shutdown).
    """

    def __init__(
        self,
        database_url: str,
        *,
        queue_size: int = 10_000,
        retry_seconds: float = 1.0,
        migrate_on_start: bool = False,
        on_audit_lost: Callable[[int], None] | None = None,
        batch_size: int = 500,
        close_timeout_seconds: float = 5.0,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        suppression_cache_seconds: float = SUPPRESSION_CACHE_SECONDS,
        suppression_policy: SuppressionPolicy = SUPPRESSES_NOTHING,
    ) -> None:
        self.database_url = database_url
        self._retry_seconds = retry_seconds
        self._close_timeout_seconds = close_timeout_seconds
        self._database = Database(
            database_url,
            retry_seconds=retry_seconds,
            migrate_on_start=migrate_on_start,
            connect_timeout_seconds=connect_timeout_seconds,
        )
        self._queue = AuditQueue(queue_size, batch_size=batch_size, on_lost=on_audit_lost)
        # What feedback suppresses (the catalogue's): on arrival, and when feedback stored before its
        # card's audit record (by another replica, or during an outage) meets the card.
        self._suppression_policy = suppression_policy
        self._reconcile_after: int | None = None  # feedback ids up to this were read twice already
        self._reconcile_seen: int | None = None
        self._writer = AuditWriter(self._queue, self._database, retry_seconds=retry_seconds, policy=self._suppression_policy)
        self._jtis = MemoryJtis()
        self._accepted_jtis = AcceptedJtis()
        # Ids whose check is under way: a second copy arriving meanwhile is a replay, whatever the
        # database answers it (the first copy's insert may still be waiting after its time ran out).
        self._checking_jtis: set[tuple[str, str]] = set()
        self._suppressions = SuppressionCache(ttl_seconds=suppression_cache_seconds)
        self._maintenance: asyncio.Task[None] | None = None
        self._warned_suppressions = False

    async def start(self) -> None:
        """Begin connecting in the background; never blocks start-up on the database."""
        self._database.start()
        self._writer.start()
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(self._maintain(), name="store-maintenance")

    async def close(self) -> None:
        """Flush queued audit records (bounded wait) and close connections."""
        await self._writer.close(timeout_seconds=self._close_timeout_seconds)
        if self._maintenance is not None:
            self._maintenance.cancel()
            try:
                await self._maintenance
            except asyncio.CancelledError:
                pass
        await self._flush_jtis()
        if len(self._jtis):
            log.error(
                "JWT ids seen during the outage not written at shutdown: until their tokens expire, a replay "
                "of them to another instance (or to this one restarted) is not refused",
                extra={"fields": {"ids": len(self._jtis), "reason": self._database.problem or "database down"}},
            )
        await self._database.close()

    async def check_ready(self) -> str | None:
        """None when the database answers at this build's schema, else the reason it does not."""
        failure = self._writer.failure
        if failure is not None:
            return failure
        try:
            # The probe goes on (it is shared and shielded); readiness answers within the orchestrator's limit.
            return await asyncio.wait_for(self._database.probe(), READY_CHECK_SECONDS)
        except TimeoutError:
            return (
                f"database check did not finish within {READY_CHECK_SECONDS:g} s "
                "(a silent database, or another process holding a lock the check waits for, such as a migration's)"
            )

    @property
    def audit_backlog(self) -> int:
        """Audit records waiting to be written."""
        return len(self._queue)

    @property
    def audit_lost(self) -> int:
        """Audit records dropped since start."""
        return self._queue.lost

    def record_invocation(self, record: InvocationRecord) -> None:
        """Queue an invocation record; returns at once (dropped and counted when the queue is full)."""
        if self._queue.put(record):
            self._writer.wake()

    async def save_feedback(
        self,
        records: Sequence[FeedbackRecord],
        *,
        received_at: datetime | None = None,
    ) -> list[FeedbackOutcome]:
        """Store every item in one transaction; returns once committed, else raises ``StoreUnavailable``.

        ``received_at`` (default now) is stored with each item and bounds when a suppression
        may start. Tried even while the database is thought down: it may be back before the next probe.
        """
        pending: dict[str, PendingCard] = {}
        for record in records:
            card = self._queue.card(record.card_uuid)
            if card is not None:
                pending[record.card_uuid] = card
        try:
            # Bounded like a connect: an idle pooled connection's pre-ping into a silent partition
            # (bytes acknowledged, no answer) waits on no TCP timeout. A 503 whose commit lands
            # later is safe: the client's retry is the same item, stored once.
            return await asyncio.wait_for(
                self._database.run(
                    _store_feedback,
                    records,
                    pending,
                    self._suppression_policy,
                    received_at or datetime.now(UTC),
                ),
                self._database.connect_timeout_seconds,
            )
        except TimeoutError:
            waited = self._database.connect_timeout_seconds
            # The transaction may still commit after this answer (a retry is then a duplicate, stored once).
            raise StoreUnavailable(f"feedback not confirmed stored: the database did not answer within {waited:g} s") from None
        except sa.exc.SQLAlchemyError as exc:
            if not is_transient(exc):
                log.error("feedback could not be stored", extra={"fields": {"reason": reason_of(exc)}})
            raise StoreUnavailable(f"feedback not confirmed stored: {reason_of(exc)}") from exc
        finally:
            # Also after a failure: the commit may have happened before the error reached us.
            self._suppressions.invalidate()

    async def suppressed_rules(self, patient_hash: str, on: date) -> frozenset[str]:
        """Rule ids suppressed for this patient on ``on``; none (logged) while the database is down.

        Answers are kept a few seconds (``suppression_cache``: why, and what another replica's
        feedback sees); feedback stored through this store clears them.
        """
        if self._database.known_down:
            self._warn_suppressions_unknown(self._database.problem or "database not ready")
            return frozenset()
        cached = self._suppressions.get(patient_hash, on)
        if cached is not None:
            return cached
        rules = await self._suppressions.read_shared(patient_hash, on, self._read_suppressions)
        return frozenset() if rules is None else rules

    async def _read_suppressions(self, patient_hash: str, on: date) -> frozenset[str] | None:
        """From the database; None (logged) when it fails or is silent past ``SUPPRESSION_READ_SECONDS``."""
        try:
            rules = await asyncio.wait_for(self._database.run(active_suppressions, patient_hash, on), SUPPRESSION_READ_SECONDS)
        except TimeoutError:
            self._warn_suppressions_unknown(f"the database did not answer within {SUPPRESSION_READ_SECONDS:g} s")
            return None
        except sa.exc.SQLAlchemyError as exc:
            self._warn_suppressions_unknown(reason_of(exc))
            return None
        self._warned_suppressions = False
        return rules

    async def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True the first time (issuer, jti) is seen; False for a replay.

        While the database is down the id is remembered in this process only (see ``replay``).
        """
        key = (issuer, jti)
        if key in self._jtis or key in self._accepted_jtis or key in self._checking_jtis:
            return False
        self._checking_jtis.add(key)
        try:
            return await self._remember_new_jti(issuer, jti, expires_at)
        finally:
            self._checking_jtis.discard(key)  # by now in memory, or stored, or refused (503)

    async def _remember_new_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        if not self._database.known_down:
            try:
                # Bounded: a silent database must not hold every call.
                new = await asyncio.wait_for(self._database.run(remember_in_database, issuer, jti, expires_at), REPLAY_CHECK_SECONDS)
                if new:
                    self._accepted_jtis.add(issuer, jti)
                return new
            except TimeoutError:
                reason = f"the database did not answer within {REPLAY_CHECK_SECONDS:g} s"
                self._database.report_trouble(TimeoutError(reason))
                log.warning("JWT id check falls back to memory", extra={"fields": {"reason": reason}})
            except sa.exc.SQLAlchemyError as exc:
                if not is_transient(exc):
                    # Reachable but refusing the write (an exhausted id sequence, say): nothing to
                    # wait out, so no memory fallback that would wave replays through across replicas.
                    log.error("JWT id check failed", extra={"fields": {"reason": reason_of(exc)}})
                    raise StoreUnavailable(f"the jti replay check failed: {reason_of(exc)}") from exc
                log.warning("JWT id check falls back to memory", extra={"fields": {"reason": reason_of(exc)}})
        return self._jtis.remember(issuer, jti, expires_at)

    async def prune_expired_jtis(self, now: datetime | None = None) -> int:
        """Delete seen JWT ids that expired before ``now``; returns how many."""
        try:
            return await self._database.run(prune_expired, now or datetime.now(UTC))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"expired JWT ids not pruned: {reason_of(exc)}") from exc

    async def _flush_jtis(self) -> None:
        """Write JWT ids remembered in memory while the database was down, if it answers now."""
        if len(self._jtis) and not self._database.known_down:
            entries = self._jtis.snapshot()
            try:
                await self._database.run(flush_to_database, entries)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("JWT ids seen during the outage not written yet", extra={"fields": {"reason": reason_of(exc)}})
                return
            self._jtis.forget(entries)

    def _warn_suppressions_unknown(self, reason: str) -> None:
        if not self._warned_suppressions:
            log.warning(
                "suppressions unknown while the database is unavailable; cards are not suppressed",
                extra={"fields": {"reason": reason}},
            )
            self._warned_suppressions = True

    async def reconcile_late_feedback(self) -> int:
        """Take over feedback about cards stored since it arrived (see ``feedback.reconcile_late_feedback``).

        Each run reads the feedback newer than what the run *before* the last had seen: an id
        taken before a run but committed after it is still read once more."""
        taken, newest = await self._database.run(
            functools.partial(reconcile_late_feedback, after_id=self._reconcile_after), self._suppression_policy
        )
        self._reconcile_after, self._reconcile_seen = self._reconcile_seen, newest
        if taken:
            self._suppressions.invalidate()
            log.info("feedback about cards stored after it taken over", extra={"fields": {"items": taken}})
        return taken

    async def _maintain(self) -> None:
        """Write JWT ids remembered during an outage; take over late feedback and prune expired ids
        now and then. Each task is timed and fails on its own: one that keeps failing (a statement
        timeout) neither starves the others nor runs back to back."""
        last_prune = last_reconcile = float("-inf")
        while True:
            await self._database.wait_usable()
            await self._maintenance_task(self._flush_jtis)
            if time.monotonic() - last_reconcile >= _RECONCILE_EVERY_SECONDS:
                last_reconcile = time.monotonic()
                await self._maintenance_task(self.reconcile_late_feedback)
            if time.monotonic() - last_prune >= _PRUNE_EVERY_SECONDS:
                last_prune = time.monotonic()
                await self._maintenance_task(self._prune_and_log)
            await asyncio.sleep(max(self._retry_seconds, 1.0))

    async def _maintenance_task(self, task: Callable[[], Awaitable[object]]) -> None:
        try:
            await task()
        except (sa.exc.SQLAlchemyError, StoreUnavailable) as exc:
            log.warning("store maintenance failed; will retry", extra={"fields": {"task": task.__name__, "reason": reason_of(exc)}})

    async def _prune_and_log(self) -> None:
        pruned = await self.prune_expired_jtis()
        if pruned:
            log.info("expired JWT ids pruned", extra={"fields": {"rows": pruned}})


def _store_feedback(
    engine: sa.Engine,
    records: Sequence[FeedbackRecord],
    pending: Mapping[str, PendingCard],
    policy: SuppressionPolicy,
    received_at: datetime,
) -> list[FeedbackOutcome]:
    return store_feedback(engine, records, pending_cards=pending, policy=policy, received_at=received_at)
