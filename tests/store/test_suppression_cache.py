"""The hook path's suppression answers: kept a few seconds, cleared by feedback stored here."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

import service.store.store as store_module
from service.store.suppression_cache import SuppressionCache
from tests.store.feedback_helpers import OVERRIDDEN_AT, PATIENT, feedback_store, issued, overridden

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


class _SlowReader:
    """A database read that answers when the test says so, counting the reads started."""

    def __init__(self, answer: frozenset[str] | None = frozenset({"r"})) -> None:
        self.answer = answer
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, patient_hash: str, on: date) -> frozenset[str] | None:
        self.started += 1
        await self.release.wait()
        return self.answer


async def _misses(cache: SuppressionCache, read: _SlowReader, count: int) -> list[asyncio.Task[frozenset[str] | None]]:
    tasks = [asyncio.ensure_future(cache.read_shared(PATIENT, DAY, read)) for _ in range(count)]
    await asyncio.sleep(0)  # every task is waiting on the read now
    return tasks


async def test_calls_that_miss_together_share_one_read_and_its_answer_is_kept() -> None:
    cache = SuppressionCache(ttl_seconds=60)
    read = _SlowReader()
    tasks = await _misses(cache, read, 32)
    read.release.set()
    assert await asyncio.gather(*tasks) == [{"r"}] * 32
    assert read.started == 1
    assert cache.get(PATIENT, DAY) == {"r"}


async def test_a_miss_after_invalidate_does_not_join_the_read_that_began_before_it() -> None:
    cache = SuppressionCache(ttl_seconds=60)
    before = _SlowReader(frozenset())
    [early] = await _misses(cache, before, 1)
    cache.invalidate()  # feedback committed while the first read was in flight
    after = _SlowReader(frozenset({"weight-management"}))
    [late] = await _misses(cache, after, 1)
    before.release.set()
    after.release.set()
    assert (await early, await late) == (frozenset(), {"weight-management"})
    assert cache.get(PATIENT, DAY) == {"weight-management"}  # the pre-feedback answer was not kept


async def test_a_failed_read_is_kept_by_no_one_and_the_next_miss_reads_again() -> None:
    cache = SuppressionCache(ttl_seconds=60)
    failing = _SlowReader(answer=None)
    tasks = await _misses(cache, failing, 3)
    failing.release.set()
    assert await asyncio.gather(*tasks) == [None] * 3
    assert failing.started == 1 and cache.get(PATIENT, DAY) is None
    working = _SlowReader()
    working.release.set()
    assert await cache.read_shared(PATIENT, DAY, working) == {"r"}
    assert working.started == 1


async def test_a_cancelled_caller_leaves_the_read_to_the_others() -> None:
    cache = SuppressionCache(ttl_seconds=60)
    read = _SlowReader()
    first, second = await _misses(cache, read, 2)
    first.cancel()
    await asyncio.sleep(0)
    read.release.set()
    assert await second == {"r"}
    assert first.cancelled() and read.started == 1


async def test_concurrent_hook_calls_for_one_patient_read_the_database_once(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real_read = store_module.active_suppressions

    def counted(engine: object, patient_hash: str, on: date) -> frozenset[str]:
        reads.append(patient_hash)
        return real_read(engine, patient_hash, on)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "active_suppressions", counted)
    store = feedback_store(migrated_url, suppression_cache_seconds=3600)
    await store.start()
    try:
        uuid = await issued(store)
        await store.save_feedback([overridden(uuid)])
        answers = await asyncio.gather(*(store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) for _ in range(16)))
        assert answers == [{"weight-management"}] * 16
        assert reads == [PATIENT]
    finally:
        await store.close()


async def test_feedback_stored_here_is_honoured_by_the_next_lookup_despite_the_cache(migrated_url: str) -> None:
    store = feedback_store(migrated_url, suppression_cache_seconds=3600)
    await store.start()
    try:
        uuid = await issued(store)
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()  # now kept
        await store.save_feedback([overridden(uuid)])
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
    finally:
        await store.close()


async def test_feedback_stored_through_another_replica_is_seen_once_the_answer_expires(migrated_url: str) -> None:
    here = feedback_store(migrated_url, suppression_cache_seconds=3600)
    short = feedback_store(migrated_url, suppression_cache_seconds=0)
    elsewhere = feedback_store(migrated_url)
    for store in (here, short, elsewhere):
        await store.start()
    try:
        uuid = await issued(elsewhere)
        on = OVERRIDDEN_AT.date()
        assert await here.suppressed_rules(PATIENT, on) == frozenset()
        assert await short.suppressed_rules(PATIENT, on) == frozenset()
        await elsewhere.save_feedback([overridden(uuid)])
        assert await here.suppressed_rules(PATIENT, on) == frozenset()  # the kept answer, up to its TTL
        assert await short.suppressed_rules(PATIENT, on) == {"weight-management"}  # an expired answer is read again
    finally:
        for store in (here, short, elsewhere):
            await store.close()
