"""Engines for SQLite and PostgreSQL with bounded waits, and the translation of their errors.

A dead database must never hang a request: PostgreSQL gets a connect timeout, TCP keepalives
and a statement timeout; SQLite a busy timeout and WAL (readers never wait for the writer).
Every pool pings a connection before use, so the service recovers by itself after the
database restarts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "make_engine",
    "describe_url",
    "sqlite_file",
    "ensure_sqlite_directory",
    "insert_or_skip",
    "checked_url",
    "is_transient",
    "read_only_problem",
    "reason_of",
    "as_utc",
    "clean_text",
    "json_text",
    "in_chunks",
]

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
# PostgreSQL statements of the running service; migrations have no limit.
_STATEMENT_TIMEOUT_MS = 30_000
_SQLITE_BUSY_TIMEOUT_MS = 10_000
# Pause between tries of ``PRAGMA journal_mode=WAL`` while another connection converts the file.
_SQLITE_WAL_RETRY_SECONDS = 0.005

# SQLSTATEs that mean "not now" rather than "never": the schema is not there yet, a
# transaction lost a race, the server is shutting down, or it takes no writes (25006: a standby
# after a failover, default_transaction_read_only): records wait for it as for a database that is
# down, instead of being dropped as bad data. Anything else is about the data.
_TRANSIENT_SQLSTATES = frozenset({"42P01", "42703", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "25006"})


# libpq takes these from the query string too (postgresql://cds@db/cds?password=...).
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def describe_url(url: str | URL) -> str:
    """The URL with its passwords masked, in the address or the query, for messages and logs."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number ("[::1/db")
        return "<unparseable database URL>"
    secrets = {key: "***" for key in parsed.query if key in _SECRET_QUERY_KEYS}
    shown = (parsed.update_query_dict(secrets) if secrets else parsed).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")  # the query is rendered URL-quoted; show the mask as the address's


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def ensure_sqlite_directory(url: str | URL) -> None:
    """Create the directory of a SQLite file (``var/`` for the default URL) when missing."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


# The one driver installed per database: postgresql:// (SQLAlchemy's default would be psycopg2) gets it too.
_DRIVERS = {"postgresql": "psycopg", "sqlite": "pysqlite"}


def make_engine(
    url: str | URL, *, connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS, for_migrations: bool = False
) -> Engine:
    """An engine that never waits unboundedly for a connection.

    ``for_migrations``: one connection, no pool and no statement timeout (a long migration is
    fine; the advisory lock that serialises replicas lives on that one connection).
    """
    parsed = checked_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, connect_timeout_seconds=connect_timeout_seconds, for_migrations=for_migrations)
    return _postgresql_engine(parsed, connect_timeout_seconds=connect_timeout_seconds, for_migrations=for_migrations)


def checked_url(url: str | URL) -> URL:
    """``CDS_DATABASE_URL`` parsed, with the driver this build ships; ``ValueError`` saying what is wrong."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number ("[::1/db")
        raise ValueError("CDS_DATABASE_URL: not a database URL; expected e.g. sqlite:///var/back-knee-cds.sqlite3") from None
    backend = parsed.get_backend_name()
    driver = _DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"CDS_DATABASE_URL: unsupported database '{backend}' in {describe_url(parsed)}; use sqlite:/// or postgresql+psycopg://")
    if parsed.get_driver_name() != driver:
        if "+" in parsed.drivername:
            raise ValueError(
                f"CDS_DATABASE_URL: driver '{parsed.get_driver_name()}' is not installed; use {backend}+{driver}:// "
                f"(or {backend}://) in {describe_url(parsed)}"
            )
        parsed = parsed.set(drivername=f"{backend}+{driver}")  # postgresql:// means psycopg 3 here
    if backend == "sqlite" and sqlite_file(parsed) is None:
        raise ValueError(
            "CDS_DATABASE_URL: in-memory SQLite is not supported (every connection would see its own empty "
            "database); name a file, e.g. sqlite:///var/back-knee-cds.sqlite3"
        )
    return parsed


def _sqlite_engine(url: URL, *, connect_timeout_seconds: float, for_migrations: bool) -> Engine:
    # No pre-ping: a pooled connection to a local file cannot go stale the way a network one
    # does, and the ping was an extra query on every checkout (a third of a hook call's
    # suppression lookup in ``python -m bench.run``).
    options: dict[str, object] = {}
    if for_migrations:
        options["poolclass"] = NullPool
    else:
        options.update(pool_size=10, max_overflow=10, pool_timeout=connect_timeout_seconds)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        json_serializer=json_text,
        **options,
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the file's lock.

    Converting a file to WAL upgrades the pragma's own read transaction to a write; SQLite
    answers SQLITE_BUSY at once there ("database is locked") instead of calling the busy
    handler, since waiting while holding a read lock could deadlock. So connections opening a
    new file together (replicas running ``db upgrade``, the probe and a request at start-up)
    failed despite the busy timeout. Once the file is WAL the pragma needs no write lock.
    Bounded by the same busy timeout.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(_SQLITE_WAL_RETRY_SECONDS)


def _postgresql_engine(url: URL, *, connect_timeout_seconds: float, for_migrations: bool) -> Engine:
    timeout = max(2, round(connect_timeout_seconds))  # libpq: whole seconds, at least 2
    connect_args: dict[str, object] = {
        "connect_timeout": timeout,
        # A peer that vanished mid-query is noticed in seconds, not after TCP's ~15 minutes.
        "keepalives": 1,
        "keepalives_idle": timeout,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": timeout * 1000,
        "application_name": "back-knee-cds",
    }
    options: dict[str, object] = {"pool_pre_ping": True}
    if for_migrations:
        options["poolclass"] = NullPool
    else:
        connect_args["options"] = f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}"
        options.update(pool_size=10, max_overflow=10, pool_timeout=connect_timeout_seconds, pool_recycle=1800)
    return sa.create_engine(url, connect_args=connect_args, json_serializer=json_text, **options)


def insert_or_skip(connection: sa.Connection, table: sa.Table, unique: Sequence[str]) -> sa.Insert:
    """``INSERT ... ON CONFLICT (unique) DO NOTHING`` for SQLite and PostgreSQL.

    Idempotence lives in the database's unique constraints, so two replicas (or two threads)
    racing on the same item still store it once.
    """
    if connection.dialect.name == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(unique))


def read_only_problem(connection: sa.Connection) -> str | None:
    """Why the database will take no writes (PostgreSQL), or None: a SELECT alone says it is fine."""
    if connection.dialect.name != "postgresql":
        return None
    if connection.execute(sa.text("SHOW transaction_read_only")).scalar() == "on":
        return "database is read-only (a hot standby, or default_transaction_read_only is on): nothing can be stored"
    return None


def is_transient(exc: BaseException) -> bool:
    """True when retrying later may succeed: no connection, schema not there yet, a lost race.

    False for errors about the data itself (a constraint, a value the column cannot hold),
    which no retry will fix.
    """
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return isinstance(exc, OSError)  # e.g. the SQLite file's directory cannot be created


def reason_of(exc: BaseException) -> str:
    """One line saying what went wrong, without SQL, parameters or the URL's password."""
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:
        exc = exc.orig
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive values (what SQLite returns) are read as UTC.

    A time at the very edge of the calendar (year 1 or 9999 with an offset) is clamped.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def json_text(value: object) -> str:
    """A JSON column's text, written by orjson rather than the json module SQLAlchemy uses by default:
    the audit writer writes three JSON lists per hook call, and this cut its CPU per record by a
    seventh (20 -> 17 us in batches of 50, SQLite). Every value stored is a list of ``clean_text``.
    """
    return orjson.dumps(value).decode()


def clean_text(value: str) -> str:
    """Text every database can store: PostgreSQL refuses NUL characters and lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


_IN_LIST_CHUNK = 500  # values per IN (...): well under every driver's parameter limit


def in_chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """``values`` sorted, in lists short enough for one ``IN (...)`` on every driver."""
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_LIST_CHUNK):
        yield ordered[start : start + _IN_LIST_CHUNK]
