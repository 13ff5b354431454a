"""Readiness as the store reports it: unreachable, migrations missing, ready; a newer schema keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.store import Store
from service.store.connection import Database
from tests.store.helpers import AbsentDatabase


def _execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


async def test_reasons_follow_the_database_as_it_comes_up(absent_database: AbsentDatabase) -> None:
    store = Store(absent_database.url, retry_seconds=0.05, migrate_on_start=False, close_timeout_seconds=0.2)
    await store.start()
    try:
        reason = await store.check_ready()
        assert reason is not None and reason.startswith("database unreachable: ")
        absent_database.appear()
        reason = await store.check_ready()
        assert reason is not None and reason.startswith("migrations not applied") and "back-knee-cds db upgrade" in reason
    finally:
        await store.close()


async def test_migrate_on_start_brings_an_empty_database_to_ready(database_url: str) -> None:
    store = Store(database_url, retry_seconds=0.05, migrate_on_start=True)
    await store.start()
    try:
        assert await store.check_ready() is None
    finally:
        await store.close()


async def test_migrate_on_start_creates_a_missing_sqlite_directory(tmp_path: Path) -> None:
    """As ``db upgrade`` does; else the file cannot be opened and the service is never ready."""
    store = Store(f"sqlite:///{tmp_path / 'not-yet' / 'cds.sqlite3'}", retry_seconds=0.05, migrate_on_start=True)
    await store.start()
    try:
        assert await store.check_ready() is None
    finally:
        await store.close()
    assert (tmp_path / "not-yet" / "cds.sqlite3").is_file()


async def test_a_schema_newer_than_this_build_still_serves(migrated_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A rolling upgrade: a newer replica migrated first; this one keeps serving and says so once."""
    _execute(migrated_url, "UPDATE alembic_version SET version_num = 'f00d'")
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        assert await store.check_ready() is None
        assert await store.check_ready() is None
    finally:
        await store.close()
    newer = [record for record in caplog.records if record.getMessage().startswith("database schema is newer")]
    assert len(newer) == 1


async def test_a_readiness_probe_writes_no_log_line_while_nothing_changes(migrated_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Orchestrators probe every few seconds: Alembic's two INFO lines per probe were most of the log."""
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        assert await store.check_ready() is None
        caplog.clear()
        with caplog.at_level("INFO"):
            for _ in range(3):
                assert await store.check_ready() is None
    finally:
        await store.close()
    assert [record.getMessage() for record in caplog.records if record.levelno >= 20 and "alembic" in record.name] == []


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_readiness_answers_in_bounded_time_when_the_check_cannot_finish(migrated_url: str) -> None:
    """Another session holds what the check reads (as a long migration holds its lock): 503 saying so, not a hang."""
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    engine = sa.create_engine(migrated_url, poolclass=sa.pool.NullPool)
    try:
        assert await store.check_ready() is None
        with engine.connect() as holder:
            holder.execute(sa.text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
            reason = await asyncio.wait_for(store.check_ready(), 10)  # a generous bound: unbounded it waited 30 s
            holder.rollback()
        assert reason is not None and reason.startswith("database check did not finish within 2 s")
    finally:
        engine.dispose()
        await store.close()


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_a_migration_that_keeps_failing_is_logged_once(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each probe (every retry_seconds) tries again; the error is logged when its reason changes, not each time."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE invocation (id integer)"))  # in the first migration's way
    finally:
        engine.dispose()
    store = Store(database_url, retry_seconds=0.05, migrate_on_start=True)
    with caplog.at_level("ERROR"):
        await store.start()
        try:
            for _ in range(5):
                reason = await store.check_ready()
                assert reason is not None and reason.startswith("migrations failed")
                await asyncio.sleep(0.1)
        finally:
            await store.close()
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == ["migrations failed"]


async def test_trouble_reported_right_after_a_good_probe_is_not_lost(migrated_url: str) -> None:
    """The supervisor cleared its trouble flag after the probe: trouble reported in between was
    wiped out, and nothing probed again (the store stayed 'down' with the database well)."""
    database = Database(migrated_url, retry_seconds=0.05, migrate_on_start=False, connect_timeout_seconds=2)
    database.start()
    try:
        await database.wait_usable()  # set inside the probe: this resumes before the supervisor does
        database.report_trouble(OSError("connection lost"))
        assert not database.usable
        await asyncio.wait_for(database.wait_usable(), 10)  # a generous bound: the supervisor probes again
    finally:
        await database.close()
