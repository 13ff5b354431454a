"""Alembic migrations: they build exactly the tables, repeat harmlessly, and survive replicas racing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.store import upgrade_database
from service.store.database import make_engine
from service.store.migrate import alembic_config, load_schema_info, migration_lock
from service.store.tables import metadata
from tests.store.helpers import ScratchPostgres, rows

TABLES = {"invocation", "card_issued", "feedback", "suppression", "seen_jwt", "alembic_version"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_builds_every_table_at_head(database_url: str) -> None:
    assert _tables(database_url) == set()
    revision = upgrade_database(database_url)
    assert revision == load_schema_info().head
    assert _tables(database_url) == TABLES


def test_upgrade_twice_is_a_no_op(migrated_url: str) -> None:
    assert upgrade_database(migrated_url) == load_schema_info().head
    assert rows(migrated_url, "SELECT version_num FROM alembic_version") == [(load_schema_info().head,)]


def test_autogenerate_finds_no_drift_between_tables_and_migrations(migrated_url: str) -> None:
    engine = sa.create_engine(migrated_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Alembic itself, to one revision (``upgrade_database`` only goes to head)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            (command.downgrade if down else command.upgrade)(alembic_config(connection=connection), revision)
            connection.commit()
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    _migrate(migrated_url, "base", down=True)
    assert _tables(migrated_url) == {"alembic_version"}
    upgrade_database(migrated_url)
    assert _tables(migrated_url) == TABLES


def test_concurrent_upgrades_from_threads_apply_once(database_url: str) -> None:
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        barrier.wait()
        try:
            results.append(upgrade_database(database_url))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert results == [load_schema_info().head] * 4
    assert _tables(database_url) == TABLES


def test_concurrent_upgrades_from_processes_on_postgresql(scratch_postgres: ScratchPostgres) -> None:
    """Replicas starting together: separate processes, one database; the advisory lock serialises them."""
    url = scratch_postgres.create(scratch_postgres.new_name())
    script = "import sys; from service.store import upgrade_database; print(upgrade_database(sys.argv[1]))"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.strip() == load_schema_info().head
    assert _tables(url) == TABLES


def test_sqlite_upgrade_creates_the_missing_directory_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'nested' / 'cds.sqlite3'}"
    upgrade_database(url)
    assert (tmp_path / "var" / "nested" / "cds.sqlite3").is_file()
    assert rows(url, "PRAGMA journal_mode") == [("wal",)]


def test_connections_opening_a_new_sqlite_file_together_all_succeed(tmp_path: Path) -> None:
    """Replicas (or the probe and a request) opening a fresh file at once: converting it to WAL
    made SQLite answer "database is locked" at once, busy timeout or not, to all but one."""
    errors: list[BaseException] = []
    for round_ in range(40):
        url = f"sqlite:///{tmp_path / f'fresh-{round_}.sqlite3'}"
        barrier = threading.Barrier(8)

        def connect(url: str = url, barrier: threading.Barrier = barrier) -> None:
            engine = make_engine(url, for_migrations=True)
            try:
                barrier.wait()
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=connect) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == [], f"round {round_}"
        assert rows(url, "PRAGMA journal_mode") == [("wal",)]


def test_sqlite_relative_default_url_lands_under_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade_database("sqlite:///var/back-knee-cds.sqlite3")
    assert (tmp_path / "var" / "back-knee-cds.sqlite3").is_file()


def _insert_invocation(connection: sa.Connection) -> int:
    """A row as an older build wrote it, in plain SQL (the tables module describes the head schema)."""
    return int(
        connection.execute(
            sa.text(
                "INSERT INTO invocation (service_id, hook, hook_instance, patient_hash, status, duration_ms,"
                " catalogue_version, received_at, skipped_resources)"
                " VALUES ('s', 'patient-view', 'h', 'hash', 200, 1.0, 'v', :at, '[]') RETURNING id"
            ),
            {"at": datetime(2026, 11, 1, tzinfo=UTC)},
        ).scalar_one()
    )


def _insert_card(connection: sa.Connection, uuid: str, invocation: int, evidence: list[str]) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO card_issued (uuid, invocation_id, rule_id, rule_version, indicator, evidence,"
            " suggestion_uuids, patient_hash) VALUES (:uuid, :invocation, 'r', '1', 'info', :evidence, '[]', 'hash')"
        ),
        {"uuid": uuid, "invocation": invocation, "evidence": json.dumps(evidence)},
    )


def test_0002_drops_the_raw_patient_id_from_stored_evidence(database_url: str) -> None:
    """Rows written before 0002 held ``Patient/<raw id>``: afterwards ``Patient``, the rest untouched."""
    evidences = [["Condition/c1", "Patient/raw-id-1", "Observation/o1"], ["Condition/c2"], ["Patient/raw-id-2"], []]
    _migrate(database_url, "0001")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            invocation = _insert_invocation(connection)
            for number, evidence in enumerate(evidences):
                _insert_card(connection, f"card-{number}", invocation, evidence)
    finally:
        engine.dispose()
    upgrade_database(database_url)
    stored = rows(database_url, "SELECT uuid, evidence FROM card_issued ORDER BY uuid")
    assert [(uuid, json.loads(evidence) if isinstance(evidence, str) else evidence) for uuid, evidence in stored] == [
        ("card-0", ["Condition/c1", "Patient", "Observation/o1"]),
        ("card-1", ["Condition/c2"]),
        ("card-2", ["Patient"]),
        ("card-3", []),
    ]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_0003_ids_go_past_32_bits_with_rows_kept(database_url: str) -> None:
    """Rows written at 0002 keep their ids; afterwards every id sequence continues past 2^31 - 1."""
    _migrate(database_url, "0002")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO seen_jwt (issuer, jti, expires_at) VALUES ('i', 'kept', :at)"), {"at": datetime(2030, 1, 1, tzinfo=UTC)})
    finally:
        engine.dispose()
    upgrade_database(database_url)
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            for table in ("invocation", "card_issued", "feedback", "suppression", "seen_jwt"):
                sequence = connection.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar_one()
                connection.execute(sa.text("SELECT setval(:s, 2147483647)"), {"s": sequence})
                assert connection.execute(sa.text("SELECT nextval(:s)"), {"s": sequence}).scalar_one() == 2**31
            invocation = _insert_invocation(connection)
            _insert_card(connection, "c", invocation, [])
    finally:
        engine.dispose()
    assert invocation > 2**31
    assert rows(database_url, "SELECT jti FROM seen_jwt") == [("kept",)]
    assert rows(database_url, "SELECT invocation_id FROM card_issued") == [(invocation,)]


def test_what_is_migrated_is_committed_before_the_lock_is_let_go(scratch_postgres: ScratchPostgres) -> None:
    """The next process to take the lock must find the schema as migrated. Alembic leaves the commit
    to the caller when the connection is already in a transaction (upgrade_database reads the
    revision first); committed after the unlock, a second replica slipped in before the commit and
    created alembic_version again (a unique violation on pg_type, about 1 run in 15). Here every
    commit of the migrating connection is slowed, so a waiter that gets in before it sees nothing."""
    url = scratch_postgres.create(scratch_postgres.new_name())
    engine = make_engine(url, for_migrations=True)
    waiter = sa.create_engine(url, poolclass=sa.pool.NullPool)
    seen: list[bool] = []

    def next_in_line() -> None:
        with waiter.connect() as connection, migration_lock(connection):
            seen.append(sa.inspect(connection).has_table("migrated_here"))

    try:
        with engine.connect() as connection:
            sa.event.listen(connection, "commit", lambda _: time.sleep(0.3))
            connection.execute(sa.text("SELECT 1"))  # a transaction open before the lock, as upgrade_database's
            with migration_lock(connection):
                waiting = threading.Thread(target=next_in_line)
                waiting.start()
                connection.execute(sa.text("CREATE TABLE migrated_here (id INTEGER)"))
            waiting.join(timeout=30)
        assert seen == [True]
    finally:
        engine.dispose()
        waiter.dispose()
