"""The audit trail: queued at once, written in the background, kept through an outage, counted when lost."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from service.store import Store, audit, upgrade_database
from service.store.audit import write_invocations
from service.store.database import make_engine
from tests.store.helpers import AbsentDatabase, ScratchPostgres, card, eventually, invocation, rows


async def test_invocation_and_its_cards_are_written_in_the_background(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    first, second = card("weight-management"), card("knee-arthritis-care")
    try:
        store.record_invocation(
            invocation(hook_instance="hi-1", cards=(first, second), skipped=("Observation/bad-1",))
        )
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    [stored] = rows(migrated_url, "SELECT * FROM invocation")
    assert stored.hook_instance == "hi-1"
    assert stored.service_id == "back-knee-risk-factors"
    assert stored.hook == "patient-view"
    assert stored.patient_hash == "p" * 64
    assert (stored.status, stored.duration_ms, stored.catalogue_version) == (200, 12.5, "1.0.0")
    assert str(stored.received_at).startswith("2026-03-01 12:00:00")
    cards = rows(migrated_url, "SELECT * FROM card_issued ORDER BY rule_id")
    assert [(c.uuid, c.rule_id, c.rule_version, c.indicator, c.invocation_id) for c in cards] == [
        (second.uuid, "knee-arthritis-care", "1.2.0", "info", stored.id),
        (first.uuid, "weight-management", "1.2.0", "info", stored.id),
    ]
    assert all(c.patient_hash == "p" * 64 for c in cards)
    raw = rows(migrated_url, "SELECT skipped_resources, evidence, suggestion_uuids FROM invocation, card_issued WHERE card_issued.uuid = :u", u=first.uuid)
    assert "Observation/bad-1" in str(raw[0][0])
    assert "Condition/knee-oa" in str(raw[0][1]) and first.suggestion_uuids[0] in str(raw[0][2])


async def test_json_columns_are_written_by_orjson_and_read_back_as_lists(migrated_url: str) -> None:
    # json_text, not the json module SQLAlchemy would use: compact text, no space after a comma.
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        store.record_invocation(invocation(hook_instance="hi-json", cards=(), skipped=("Observation/a", "Condition/b \u00e9")))
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    [(text,)] = rows(migrated_url, "SELECT CAST(skipped_resources AS TEXT) FROM invocation")
    assert text == '["Observation/a","Condition/b \u00e9"]'
    [(value,)] = rows(migrated_url, "SELECT skipped_resources FROM invocation")
    assert (value if isinstance(value, list) else json.loads(value)) == ["Observation/a", "Condition/b \u00e9"]


async def test_many_records_are_written_in_batches(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05, batch_size=100)
    await store.start()
    try:
        for index in range(1_050):
            store.record_invocation(invocation(hook_instance=f"hi-{index}", cards=(card(),)))
        await eventually(lambda: store.audit_backlog == 0, timeout=60)
    finally:
        await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(1_050,)]
    assert rows(migrated_url, "SELECT count(*) FROM card_issued") == [(1_050,)]
    assert store.audit_lost == 0


async def test_records_wait_while_the_database_is_down_and_are_written_when_it_returns(
    absent_database: AbsentDatabase,
) -> None:
    store = Store(absent_database.url, retry_seconds=0.05, connect_timeout_seconds=2)
    await store.start()
    try:
        for index in range(3):
            store.record_invocation(invocation(hook_instance=f"hi-{index}", cards=(card(),)))
        reason = await store.check_ready()
        assert reason is not None and reason.startswith("database unreachable")
        assert store.audit_backlog == 3
        absent_database.appear()
        upgrade_database(absent_database.url)
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    written = rows(absent_database.url, "SELECT hook_instance FROM invocation ORDER BY id")
    assert [row.hook_instance for row in written] == ["hi-0", "hi-1", "hi-2"]
    assert store.audit_lost == 0


async def test_a_full_queue_drops_new_records_and_counts_them(absent_database: AbsentDatabase) -> None:
    lost: list[int] = []
    store = Store(absent_database.url, queue_size=3, retry_seconds=0.05, on_audit_lost=lost.append, connect_timeout_seconds=2)
    await store.start()
    try:
        for index in range(5):
            store.record_invocation(invocation(hook_instance=f"hi-{index}"))
        assert sum(lost) == 2
        assert store.audit_lost == 2
        assert store.audit_backlog == 3
        absent_database.appear()
        upgrade_database(absent_database.url)
        await eventually(lambda: store.audit_backlog == 0)
        # Room again: new records are accepted.
        store.record_invocation(invocation(hook_instance="hi-after"))
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    written = rows(absent_database.url, "SELECT hook_instance FROM invocation ORDER BY id")
    assert [row.hook_instance for row in written] == ["hi-0", "hi-1", "hi-2", "hi-after"]
    assert sum(lost) == 2


async def test_close_writes_what_is_queued(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    for index in range(20):
        store.record_invocation(invocation(hook_instance=f"hi-{index}"))
    await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(20,)]


async def test_close_with_the_database_down_counts_unwritten_records_lost(absent_database: AbsentDatabase) -> None:
    lost: list[int] = []
    store = Store(absent_database.url, retry_seconds=0.05, close_timeout_seconds=0.2, on_audit_lost=lost.append, connect_timeout_seconds=2)
    await store.start()
    store.record_invocation(invocation())
    store.record_invocation(invocation())
    await store.close()
    assert sum(lost) == 2 and store.audit_lost == 2


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
async def test_a_write_that_commits_after_the_close_timeout_is_not_counted_lost(migrated_url: str) -> None:
    """The writer is cancelled at the close timeout, but its write runs on in its thread and may
    commit: those records were reported lost (log and metric) while they were in the database."""
    path = migrated_url.removeprefix("sqlite:///")
    lost: list[int] = []
    store = Store(migrated_url, retry_seconds=0.05, close_timeout_seconds=0.3, on_audit_lost=lost.append)
    await store.start()
    assert await store.check_ready() is None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the write waits on SQLite's busy timeout meanwhile
        for index in range(3):
            store.record_invocation(invocation(hook_instance=f"late-{index}"))
        await asyncio.sleep(0.3)  # the writer has started its write, which waits for the lock
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0.6)  # past the close timeout: the writer is cancelled, its write goes on
        holder.execute("COMMIT")
        await closing
    finally:
        holder.close()
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(3,)]
    assert sum(lost) == 0 and store.audit_lost == 0


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
async def test_a_write_that_ends_just_as_the_close_timeout_cancels_the_writer_is_not_counted_lost(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrow case of the one above: the write has committed and ended, but the writer has not
    yet resumed when close() cancels it, so the writer sees a cancellation with its write done. The
    write is then close()'s to settle; were it forgotten, its committed records would count lost.

    Made exact, not left to timing: the write is a future this test ends (after really writing) in
    the same step in which close()'s timeout leads to the cancel."""
    lost: list[int] = []
    store = Store(migrated_url, retry_seconds=0.05, close_timeout_seconds=0.05, on_audit_lost=lost.append)
    await store.start()
    assert await store.check_ready() is None
    database = store._database
    writes: list[tuple[asyncio.Future[None], Any, tuple[object, ...]]] = []

    def run(work: Any, *args: object) -> asyncio.Future[None]:  # the writer's write, held until the close timeout
        write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        writes.append((write, work, args))
        return write

    async def wait_for(awaitable: Any, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            for write, work, args in writes:  # the write commits and ends just now, before the cancel
                if not write.done():
                    write.set_result(work(database.engine, *args))
            raise

    monkeypatch.setattr(database, "run", run)
    monkeypatch.setattr(audit, "asyncio", SimpleNamespace(**{**vars(asyncio), "wait_for": wait_for}))
    for index in range(3):
        store.record_invocation(invocation(hook_instance=f"ending-{index}"))
    await eventually(lambda: len(writes) == 1)
    await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(3,)]
    assert sum(lost) == 0 and store.audit_lost == 0


async def test_a_card_uuid_seen_twice_is_stored_once_and_both_calls_are_kept(migrated_url: str) -> None:
    repeated = card(uuid_="00000000-0000-4000-8000-000000000001")
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        store.record_invocation(invocation(hook_instance="a", cards=(repeated,)))
        store.record_invocation(invocation(hook_instance="b", cards=(repeated,)))
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(2,)]
    assert rows(migrated_url, "SELECT count(*) FROM card_issued") == [(1,)]
    assert store.audit_lost == 0


async def test_text_postgresql_cannot_hold_is_stored_readably(migrated_url: str) -> None:
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        store.record_invocation(invocation(hook_instance="nul\x00here \ud800", skipped=("Condition/\x00",)))
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    assert rows(migrated_url, "SELECT hook_instance FROM invocation") == [("nul\ufffdhere ?",)]
    assert store.audit_lost == 0


async def test_a_record_the_database_refuses_is_dropped_alone(scratch_postgres: ScratchPostgres) -> None:
    """PostgreSQL refuses a status beyond its integer range: that record is lost and counted, its batch is not."""
    url = scratch_postgres.create(scratch_postgres.new_name())
    upgrade_database(url)
    lost: list[int] = []
    store = Store(url, retry_seconds=0.05, on_audit_lost=lost.append)
    store.record_invocation(invocation(hook_instance="before"))
    store.record_invocation(invocation(hook_instance="bad", status=2**40))
    store.record_invocation(invocation(hook_instance="after"))
    await store.start()  # all three go in the first batch
    try:
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    assert [row.hook_instance for row in rows(url, "SELECT hook_instance FROM invocation ORDER BY id")] == ["before", "after"]
    assert sum(lost) == 1


async def test_start_returns_at_once_without_a_database() -> None:
    """Start-up in any order: nothing listens on port 1 of loopback."""
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/none", retry_seconds=0.05, close_timeout_seconds=0.2)
    await store.start()
    store.record_invocation(invocation())
    reason = await store.check_ready()
    assert reason is not None and reason.startswith("database unreachable")
    await store.close()


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_the_writer_recovers_after_postgresql_drops_its_connections(
    migrated_url: str, scratch_postgres: ScratchPostgres
) -> None:
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        store.record_invocation(invocation(hook_instance="before"))
        await eventually(lambda: store.audit_backlog == 0)
        scratch_postgres.terminate_connections(migrated_url.rsplit("/", 1)[1])
        store.record_invocation(invocation(hook_instance="after"))
        await eventually(lambda: store.audit_backlog == 0)
    finally:
        await store.close()
    assert [row.hook_instance for row in rows(migrated_url, "SELECT hook_instance FROM invocation ORDER BY id")] == ["before", "after"]


def test_a_batch_tried_again_after_a_failure_writes_only_what_is_not_stored(migrated_url: str) -> None:
    """A lost COMMIT acknowledgement: the batch is in the database, the writer saw an error and tries again."""
    committed = [invocation(hook_instance="lost-ack", cards=(card(),)), invocation(hook_instance="no-cards")]
    retried_by_the_ehr = replace(committed[1], received_at=committed[1].received_at + timedelta(microseconds=1))
    other_service = replace(committed[0], service_id="back-knee-care-guidance", cards=())
    engine = make_engine(migrated_url)
    try:
        write_invocations(engine, committed)
        write_invocations(engine, [*committed, retried_by_the_ehr, other_service], after_failure=True)
        write_invocations(engine, committed, after_failure=True)
    finally:
        engine.dispose()
    stored = rows(migrated_url, "SELECT service_id, hook_instance FROM invocation ORDER BY id")
    assert [tuple(row) for row in stored] == [
        ("back-knee-risk-factors", "lost-ack"),
        ("back-knee-risk-factors", "no-cards"),
        ("back-knee-risk-factors", "no-cards"),  # a new call by the EHR: a row of its own
        ("back-knee-care-guidance", "lost-ack"),
    ]
    assert rows(migrated_url, "SELECT count(*) FROM card_issued") == [(1,)]
