"""Alembic migrations: apply them safely (several replicas may start at once) and check them.

The migration scripts live in ``migrations/`` at the repository root; ``alembic.ini`` there is
for developers running the ``alembic`` command. The service builds its Alembic configuration
here and hands the URL (from ``Settings``) to ``migrations/env.py`` itself.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.store.database import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    describe_url,
    ensure_sqlite_directory,
    is_transient,
    make_engine,
    reason_of,
    sqlite_file,
)
from service.shipped import shipped_dir
from service.store.errors import DatabaseUnreachable, MigrationError

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaInfo",
    "load_schema_info",
    "alembic_config",
    "migration_lock",
    "upgrade_database",
    "wait_for_database",
    "schema_problem",
]

MIGRATIONS_DIR = shipped_dir("migrations")

# pg_advisory_lock key held while migrating: any fixed 64-bit number unique to this project.
_ADVISORY_LOCK_KEY = 0x6B6E_6565_6364_73  # "kneecds"

# Alembic's `context` and `op` are module-level proxies: one migration run per process at a time.
_ALEMBIC_RUN = threading.Lock()


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """The revisions this build ships: the head it needs, and every one it knows."""

    head: str
    known: frozenset[str]


def alembic_config(*, database_url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """Alembic configuration for ``migrations/``; env.py takes the URL or connection from here."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic migrations not found at {MIGRATIONS_DIR}; install the project from its repository, in "
            "place (pip install -e .) or as a wheel built from it, which bundles them"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def load_schema_info() -> SchemaInfo:
    """Read the migration scripts once (file I/O: call it off the event loop)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if head is None:
        raise FileNotFoundError(f"no migration scripts in {MIGRATIONS_DIR / 'versions'}")
    return SchemaInfo(head=head, known=frozenset(revision.revision for revision in script.walk_revisions()))


def schema_problem(
    connection: sa.Connection, schema: SchemaInfo, *, on_newer: Callable[[str], None] | None = None
) -> str | None:
    """None when the database is at this build's head (or at a newer, unknown revision), else why not.

    A revision this build does not know comes from a newer release during a rolling upgrade;
    migrations are written to be additive, so the older replica keeps serving; ``on_newer``
    hears the revision so the caller can say so in the log.
    """
    current = current_revision(connection)
    if current == schema.head:
        return None
    if current is None:
        return "migrations not applied: the database has no schema yet; run `back-knee-cds db upgrade`"
    if current not in schema.known:
        if on_newer is not None:
            on_newer(current)
        return None
    return f"migrations not applied: the database is at revision {current}, this build needs {schema.head}; run `back-knee-cds db upgrade`"


def current_revision(connection: sa.Connection) -> str | None:
    """The database's Alembic revision, None before any migration.

    Read from ``alembic_version`` itself: Alembic's MigrationContext logs two INFO lines each
    time it is made, which on every readiness probe was most of the service's log.
    """
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def migration_lock(connection: sa.Connection) -> Iterator[None]:
    """Hold a lock that serialises migrations across processes and hosts, and commit what was
    migrated before letting go of it.

    PostgreSQL: a session advisory lock on this connection (replicas starting together queue
    here; each then finds the schema current and does nothing). SQLite: an exclusive lock on
    a file next to the database (all users of a SQLite file share one host).

    The commit is made here, inside the lock: Alembic leaves it to the caller when the connection
    was already in a transaction (a revision read first), and a commit after the unlock let the
    next replica in before it, to create ``alembic_version`` a second time.
    """
    with _cross_process_lock(connection):
        try:
            yield
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


@contextmanager
def _cross_process_lock(connection: sa.Connection) -> Iterator[None]:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        connection.commit()  # the lock is the session's; no transaction stays open around Alembic
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            connection.commit()
        return
    path = sqlite_file(connection.engine.url)
    if path is None:
        yield
        return
    with open(path.with_name(path.name + ".migrate-lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def upgrade_database(url: str, *, connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS) -> str:
    """Apply every migration up to head; safe when several processes call it at once.

    Returns the revision the database is at. Raises ``DatabaseUnreachable`` when the database
    cannot be reached (a retry may work) and ``MigrationError`` when a migration fails.
    """
    shown = describe_url(url)
    engine = _admin_engine(url, shown=shown, connect_timeout_seconds=connect_timeout_seconds)
    try:
        with engine.connect() as connection, _ALEMBIC_RUN:
            current = current_revision(connection)
            if current is not None and current not in load_schema_info().known:
                # A newer release's schema (a rollback, an older init job): nothing here applies,
                # and this build serves on it (migrations are additive). Alembic would raise.
                return current
            # env.py takes the cross-process migration lock on this connection.
            command.upgrade(alembic_config(connection=connection), "head")
            revision = current_revision(connection)
            connection.commit()
    except sa.exc.SQLAlchemyError as exc:
        if is_transient(exc):
            raise DatabaseUnreachable(f"database {shown} unreachable: {reason_of(exc)}") from exc
        raise MigrationError(f"migrating database {shown} failed: {reason_of(exc)}") from exc
    finally:
        engine.dispose()
    return revision or ""


def wait_for_database(
    url: str,
    *,
    timeout_seconds: float,
    retry_seconds: float = 1.0,
    on_wait: Callable[[str], None] | None = None,
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
) -> None:
    """Return once ``SELECT 1`` succeeds; raise ``DatabaseUnreachable`` after ``timeout_seconds``.

    For a database that starts alongside the service (a container stack). ``on_wait`` hears
    each new reason for waiting, once.
    """
    shown = describe_url(url)
    engine = _admin_engine(url, shown=shown, connect_timeout_seconds=connect_timeout_seconds)
    deadline = time.monotonic() + timeout_seconds
    last_reason = None
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                return
            except sa.exc.SQLAlchemyError as exc:
                if not is_transient(exc):
                    raise DatabaseUnreachable(f"database {shown} refused the connection: {reason_of(exc)}") from exc
                reason = reason_of(exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Not "did not answer": a server saying the database or role does not exist (yet:
                # an init job may still create it) is waited for too; the reason says which.
                raise DatabaseUnreachable(f"database {shown} could not be connected to within {timeout_seconds:g} s: {reason}")
            if reason != last_reason and on_wait is not None:
                on_wait(reason)
            last_reason = reason
            time.sleep(min(retry_seconds, remaining))
    finally:
        engine.dispose()


def _admin_engine(url: str, *, shown: str, connect_timeout_seconds: float) -> sa.Engine:
    """An engine for migrating or probing ``url``; a SQLite file's directory is created first."""
    try:
        ensure_sqlite_directory(url)
    except OSError as exc:
        raise DatabaseUnreachable(f"database {shown} unreachable: cannot create its directory: {exc}") from exc
    return make_engine(url, connect_timeout_seconds=connect_timeout_seconds, for_migrations=True)
