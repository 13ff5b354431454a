"""The hook path's suppression answers: kept a few seconds, cleared by feedback stored here."""

from __future__ import annotations

from datetime import date

from service.store import Store
from service.store.suppression_cache import SuppressionCache
from tests.store.test_feedback import OVERRIDDEN_AT, PATIENT, SUPPRESS_DAYS, issued, overridden

DAY = date(2026, 3, 10)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_ttl_seconds_then_read_again() -> None:
    clock = _Clock()
    cache = SuppressionCache(ttl_seconds=2.0, clock=clock)
    cache.put(PATIENT, DAY, frozenset({"r"}), generation=cache.generation)
    clock.now += 1.9
    assert cache.get(PATIENT, DAY) == {"r"}
    assert cache.get(PATIENT, date(2026, 3, 11)) is None  # another day is another question
    clock.now += 0.1
    assert cache.get(PATIENT, DAY) is None
    assert len(cache) == 0


def test_an_answer_read_while_feedback_was_stored_is_not_kept() -> None:
    cache = SuppressionCache(ttl_seconds=2.0)
    generation = cache.generation  # a lookup starts
    cache.invalidate()  # feedback committed meanwhile
    cache.put(PATIENT, DAY, frozenset(), generation=generation)
    assert cache.get(PATIENT, DAY) is None


def test_the_oldest_answers_go_first_past_max_entries() -> None:
    cache = SuppressionCache(ttl_seconds=60, max_entries=2)
    for patient in ("a", "b", "c"):
        cache.put(patient, DAY, frozenset(), generation=cache.generation)
    assert (cache.get("a", DAY), cache.get("b", DAY), cache.get("c", DAY)) == (None, frozenset(), frozenset())


def test_zero_seconds_keeps_nothing() -> None:
    cache = SuppressionCache(ttl_seconds=0)
    cache.put(PATIENT, DAY, frozenset(), generation=cache.generation)
    assert cache.get(PATIENT, DAY) is None


async def test_feedback_stored_here_is_honoured_by_the_next_lookup_despite_the_cache(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05, suppression_cache_seconds=3600)
    await store.start()
    try:
        uuid = await issued(store)
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()  # now kept
        await store.save_feedback([overridden(uuid)], suppress_days=SUPPRESS_DAYS)
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
    finally:
        await store.close()


async def test_feedback_stored_through_another_replica_is_seen_once_the_answer_expires(migrated_url: str) -> None:
    here = Store(migrated_url, retry_seconds=0.05, suppression_cache_seconds=3600)
    short = Store(migrated_url, retry_seconds=0.05, suppression_cache_seconds=0)
    elsewhere = Store(migrated_url, retry_seconds=0.05)
    for store in (here, short, elsewhere):
        await store.start()
    try:
        uuid = await issued(elsewhere)
        on = OVERRIDDEN_AT.date()
        assert await here.suppressed_rules(PATIENT, on) == frozenset()
        assert await short.suppressed_rules(PATIENT, on) == frozenset()
        await elsewhere.save_feedback([overridden(uuid)], suppress_days=SUPPRESS_DAYS)
        assert await here.suppressed_rules(PATIENT, on) == frozenset()  # the kept answer, up to its TTL
        assert await short.suppressed_rules(PATIENT, on) == {"weight-management"}  # an expired answer is read again
    finally:
        for store in (here, short, elsewhere):
            await store.close()
