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
  that started before a commit cannot put a stale answer back after ``invalidate``.

Bounded: at most ``max_entries`` answers; the oldest go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

__all__ = ["SUPPRESSION_CACHE_SECONDS", "SuppressionCache"]

SUPPRESSION_CACHE_SECONDS = 2.0


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
