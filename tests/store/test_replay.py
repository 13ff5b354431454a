"""Seen JWT ids: a second use is a replay, across restarts and replicas, and through a database outage."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import service.store.store as store_module
from service.store import Store, StoreUnavailable, upgrade_database
from service.store.replay import AcceptedJtis
from tests.robustness.tcp_proxy import proxy_to
from tests.store.helpers import AbsentDatabase, ScratchPostgres, eventually, rows

ISSUER = "https://ehr.example/client"
EXPIRES = datetime.now(UTC) + timedelta(days=365)  # set at import: never reached by the pruner, however long the run takes to get here


@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[Store]:
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    assert await store.check_ready() is None
    try:
        yield store
    finally:
        await store.close()


async def test_first_use_is_accepted_and_a_second_refused(store: Store, migrated_url: str) -> None:
    assert await store.remember_jti(ISSUER, "jti-1", EXPIRES) is True
    assert await store.remember_jti(ISSUER, "jti-1", EXPIRES) is False
    assert await store.remember_jti("https://other.example", "jti-1", EXPIRES) is True
    assert await store.remember_jti(ISSUER, "jti-2", EXPIRES) is True
    assert rows(migrated_url, "SELECT count(*) FROM seen_jwt") == [(3,)]


async def test_a_replay_is_refused_after_a_restart(migrated_url: str) -> None:
    first = Store(migrated_url, retry_seconds=0.05)
    await first.start()
    assert await first.check_ready() is None
    assert await first.remember_jti(ISSUER, "jti-restart", EXPIRES) is True
    await first.close()
    second = Store(migrated_url, retry_seconds=0.05)
    await second.start()
    try:
        assert await second.check_ready() is None
        assert await second.remember_jti(ISSUER, "jti-restart", EXPIRES) is False
        assert await second.remember_jti(ISSUER, "jti-new", EXPIRES) is True
    finally:
        await second.close()


async def test_two_replicas_racing_on_one_id_accept_it_once(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # About the race, not the fallback: an insert slower than REPLAY_CHECK_SECONDS on a busy machine
    # is accepted from memory by design, and both replicas would accept.
    monkeypatch.setattr(store_module, "REPLAY_CHECK_SECONDS", 30)
    replicas = [Store(migrated_url, retry_seconds=0.05) for _ in range(2)]
    for replica in replicas:
        await replica.start()
        assert await replica.check_ready() is None
    try:
        for index in range(20):
            answers = await asyncio.gather(
                *(replica.remember_jti(ISSUER, f"race-{index}", EXPIRES) for replica in replicas for _ in range(3))
            )
            assert sorted(answers) == [False] * 5 + [True]
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_copy_arriving_while_a_slow_check_of_its_id_runs_is_a_replay(
    store: Store, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first copy's insert stalls (a write lock held elsewhere), so after REPLAY_CHECK_SECONDS it is
    accepted from memory while the insert still waits. Before: a second copy arriving meanwhile found
    the id neither in memory nor in the database, its own insert went through first, and both were
    accepted. The stall is injected in front of the real insert; the database is real."""
    release = threading.Event()
    real_insert = store_module.remember_in_database
    inserts = itertools.count()

    def stalled_first(engine: object, issuer: str, jti: str, expires_at: datetime) -> bool:
        if next(inserts) == 0:
            release.wait(10)
        return real_insert(engine, issuer, jti, expires_at)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "remember_in_database", stalled_first)
    monkeypatch.setattr(store_module, "REPLAY_CHECK_SECONDS", 0.5)
    first = asyncio.create_task(store.remember_jti(ISSUER, "slow", EXPIRES))
    await asyncio.sleep(0.1)  # the first copy is waiting for its insert
    second = await store.remember_jti(ISSUER, "slow", EXPIRES)
    accepted_first = await first  # from memory, after 0.5 s
    release.set()
    assert (accepted_first, second) == (True, False)
    await eventually(lambda: rows(migrated_url, "SELECT count(*) FROM seen_jwt WHERE jti = 'slow'") == [(1,)])
    assert await store.remember_jti(ISSUER, "slow", EXPIRES) is False


async def test_a_very_long_id_is_still_recognised(store: Store, migrated_url: str) -> None:
    long_jti = "x" * 10_000
    assert await store.remember_jti(ISSUER, long_jti, EXPIRES) is True
    assert await store.remember_jti(ISSUER, long_jti, EXPIRES) is False
    assert await store.remember_jti(ISSUER, long_jti + "y", EXPIRES) is True
    [(stored,)] = rows(migrated_url, "SELECT jti FROM seen_jwt WHERE jti LIKE 'sha256:%' ORDER BY id LIMIT 1")
    assert len(stored) == len("sha256:") + 64


async def test_expired_ids_are_pruned_and_live_ones_kept(store: Store, migrated_url: str) -> None:
    now = datetime.now(UTC)
    await store.remember_jti(ISSUER, "expires-soon", now + timedelta(minutes=1))
    await store.remember_jti(ISSUER, "expires-later", now + timedelta(minutes=10))
    assert await store.prune_expired_jtis(now + timedelta(minutes=5)) == 1
    assert rows(migrated_url, "SELECT jti FROM seen_jwt") == [("expires-later",)]


async def test_expired_ids_are_pruned_in_the_background(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05)
    assert await store.remember_jti(ISSUER, "expired", datetime.now(UTC) - timedelta(minutes=1)) is True
    await store.start()
    try:
        await eventually(lambda: rows(migrated_url, "SELECT count(*) FROM seen_jwt") == [(0,)])
    finally:
        await store.close()


async def test_with_the_database_down_ids_are_remembered_in_memory_then_written(absent_database: AbsentDatabase) -> None:
    store = Store(absent_database.url, retry_seconds=0.05, connect_timeout_seconds=2, close_timeout_seconds=0.2)
    await store.start()
    try:
        assert await store.check_ready() is not None
        assert await store.remember_jti(ISSUER, "during-outage", EXPIRES) is True
        assert await store.remember_jti(ISSUER, "during-outage", EXPIRES) is False
        absent_database.appear()
        upgrade_database(absent_database.url)
        await eventually(lambda: bool(rows(absent_database.url, "SELECT 1 FROM seen_jwt WHERE jti = 'during-outage'")))
        assert await store.remember_jti(ISSUER, "during-outage", EXPIRES) is False
    finally:
        await store.close()
    restarted = Store(absent_database.url, retry_seconds=0.05)
    await restarted.start()
    try:
        assert await restarted.check_ready() is None
        assert await restarted.remember_jti(ISSUER, "during-outage", EXPIRES) is False
    finally:
        await restarted.close()


async def test_an_id_accepted_before_an_outage_is_refused_during_it(scratch_postgres: ScratchPostgres) -> None:
    """Only the database knew it: without the process's own memory of accepted ids, the replay got a 200."""
    url = scratch_postgres.create(scratch_postgres.new_name())
    upgrade_database(url)
    parsed = make_url(url)
    with proxy_to(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        store = Store(proxied, retry_seconds=0.05, connect_timeout_seconds=2, close_timeout_seconds=0.2)
        await store.start()
        try:
            assert await store.check_ready() is None
            assert await store.remember_jti(ISSUER, "before-outage", EXPIRES) is True
            proxy.set_mode("refuse")
            assert await store.remember_jti(ISSUER, "before-outage", EXPIRES) is False
            assert await store.remember_jti(ISSUER, "during-outage", EXPIRES) is True
            assert await store.remember_jti(ISSUER, "during-outage", EXPIRES) is False
        finally:
            await store.close()


def test_accepted_ids_are_bounded_forgetting_the_oldest_first() -> None:
    accepted = AcceptedJtis(capacity=3)
    for jti in ("a", "b", "c", "d"):
        accepted.add(ISSUER, jti)
    assert len(accepted) == 3
    assert (ISSUER, "a") not in accepted and all((ISSUER, jti) in accepted for jti in ("b", "c", "d"))
    for number in range(1_000):  # dropping the oldest stays cheap however many went before
        accepted.add(ISSUER, f"more-{number}")
    assert len(accepted) == 3 and (ISSUER, "more-999") in accepted


async def test_ids_still_only_in_memory_at_shutdown_are_logged_as_not_written(
    absent_database: AbsentDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(absent_database.url, retry_seconds=0.05, connect_timeout_seconds=2, close_timeout_seconds=0.2)
    await store.start()
    assert await store.check_ready() is not None
    assert await store.remember_jti(ISSUER, "never-written", EXPIRES) is True
    await store.close()
    (line,) = [record for record in caplog.records if record.getMessage().startswith("JWT ids seen during the outage not written at shutdown")]
    assert line.levelname == "ERROR" and line.fields["ids"] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_silent_database_does_not_hold_the_replay_check(store: Store, migrated_url: str) -> None:
    """Another session holds the table (as a stalled server would hold the insert): the check gives
    up after a second and remembers the id in memory, as during an outage, and the id reaches
    the database once it answers again."""
    engine = sa.create_engine(migrated_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder:
            holder.execute(sa.text("LOCK TABLE seen_jwt IN ACCESS EXCLUSIVE MODE"))
            # A generous bound (the check gives up after 1 s), not a speed claim: unbounded, it waited out the 30 s statement timeout.
            assert await asyncio.wait_for(store.remember_jti(ISSUER, "jti-stalled", EXPIRES), 10) is True
            assert await store.remember_jti(ISSUER, "jti-stalled", EXPIRES) is False
            holder.rollback()
    finally:
        engine.dispose()
    await eventually(lambda: rows(migrated_url, "SELECT count(*) FROM seen_jwt WHERE jti = 'jti-stalled'") == [(1,)])


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_database_that_refuses_the_write_for_good_fails_the_check(store: Store, migrated_url: str) -> None:
    """Not an outage (here: the id sequence exhausted): no memory fallback, which would let every
    replica accept the same token; the caller answers 503."""
    sequence = rows(migrated_url, "SELECT pg_get_serial_sequence('seen_jwt', 'id')")[0][0]
    rows(migrated_url, f"SELECT setval('{sequence}', (SELECT seqmax FROM pg_sequence WHERE seqrelid = '{sequence}'::regclass))")
    with pytest.raises(StoreUnavailable, match="the jti replay check failed"):
        await store.remember_jti(ISSUER, "jti-no-room", EXPIRES)
