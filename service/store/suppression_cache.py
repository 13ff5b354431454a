"""The hook path's suppression answers, kept a few seconds per patient and day.

Every hook call asks which rules are suppressed for its patient. Asking the database costs a
worker-thread hop plus the query (about 0.15-0.2 ms of CPU on SQLite, more under load, make
bench), while an EHR opening a chart calls the service several times for one patient within
moments (one call per service and hook). So an answer is kept for ``ttl_seconds``:

- feedback stored through this process clears the cache once committed (``invalidate``), so
  an override here is honoured by the very next call, as before;
- feedback stored through another replica of the service is seen here at most ``ttl_seconds``
  later (``SUPPRESSION_CACHE_SECONDS``, 2 s): during that window a card the clinician has just
  silenced on another replica can be shown once more. Suppression is a courtesy (fewer repeat
  cards), never a safety gate, so the window is acceptable and short;
- an answer read while feedback was being stored is not kept (``generation``), so a lookup
  that started before a commit cannot put a stale answer back after ``invalidate``;
- calls that miss at the same time share one read (``read_shared``): when an answer expires
  under load, every call in flight for that patient misses at once, and each used to start its
  own read. Those worker threads contend with the event loop for the GIL: with the bench's
  typical body at concurrency 32 the slowest call took 508 ms, 86 ms with one shared read
  (server-side p99 76 -> 41 ms; most calls take 2 ms).

Bounded: at most ``max_entries`` answers; the oldest go first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date

__all__ = ["SUPPRESSION_CACHE_SECONDS", "SuppressionCache", "SuppressionReader"]

SUPPRESSION_CACHE_SECONDS = 2.0

# Reads a patient's suppressed rules on a day from the database; None when it did not answer.
SuppressionReader = Callable[[str, date], Awaitable[frozenset[str] | None]]


class SuppressionCache:
    """Suppressed rule ids by (patient hash, day), each answer kept ``ttl_seconds``."""

    def __init__(
        self, *, ttl_seconds: float = SUPPRESSION_CACHE_SECONDS, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._answers: dict[tuple[str, date], tuple[float, frozenset[str]]] = {}
        self.generation = 0  # bumped by every invalidate()
        # Reads in flight, by question and generation: a call after invalidate() never joins a
        # read that began before the feedback was committed.
        self._reads: dict[tuple[str, date, int], asyncio.Future[frozenset[str] | None]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, patient_hash: str, on: date) -> frozenset[str] | None:
        """The kept answer, or None when there is none or it is older than ``ttl_seconds``."""
        key = (patient_hash, on)
        entry = self._answers.get(key)
        if entry is None:
            return None
        stored_at, rules = entry
        if self._clock() - stored_at >= self._ttl:
            del self._answers[key]
            return None
        return rules

    def read_shared(self, patient_hash: str, on: date, read: SuppressionReader) -> Awaitable[frozenset[str] | None]:
        """After a miss: ``read``'s answer, kept, from the read in flight for this question if any.

        ``read`` answers None when the database did not: nothing is kept then. A caller that is
        cancelled leaves the read running for the others.
        """
        key = (patient_hash, on, self.generation)
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read_and_keep(patient_hash, on, read, self.generation))
            self._reads[key] = pending
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        return asyncio.shield(pending)

    async def _read_and_keep(
        self, patient_hash: str, on: date, read: SuppressionReader, generation: int
    ) -> frozenset[str] | None:
        rules = await read(patient_hash, on)
        if rules is not None:
            self.put(patient_hash, on, rules, generation=generation)
        return rules

    def put(self, patient_hash: str, on: date, rules: frozenset[str], *, generation: int) -> None:
        """Keep an answer read from the database, unless ``invalidate`` ran since the read began."""
        if self._ttl <= 0 or generation != self.generation:
            return
        key = (patient_hash, on)
        self._answers.pop(key, None)  # re-inserted last: the dict's order is the age order
        self._answers[key] = (self._clock(), rules)
        while len(self._answers) > self._max_entries:
            del self._answers[next(iter(self._answers))]

    def invalidate(self) -> None:
        """Forget every answer (feedback was stored): the next calls read the database."""
        self.generation += 1
        self._answers.clear()
