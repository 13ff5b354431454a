"""The store's view of its database: reachable and migrated, or not and why.

The service starts whether or not the database is up (start-up in any order). A background
task probes every ``retry_seconds`` until the database answers at this build's schema
(applying migrations first when configured), then waits until some operation reports
trouble, and probes again. Blocking work runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.store.database import (
    describe_url,
    ensure_sqlite_directory,
    is_transient,
    make_engine,
    read_only_problem,
    reason_of,
)
from service.store.errors import DatabaseUnreachable, MigrationError
from service.store.migrate import SchemaInfo, load_schema_info, schema_problem, upgrade_database

__all__ = ["Database"]

log = logging.getLogger("service.store")

T = TypeVar("T")


class Database:
    """One engine plus what is known about the database behind it."""

    def __init__(
        self, url: str, *, retry_seconds: float, migrate_on_start: bool, connect_timeout_seconds: float
    ) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, connect_timeout_seconds=connect_timeout_seconds)
        self._retry_seconds = retry_seconds
        self._migrate_on_start = migrate_on_start
        self._connect_timeout_seconds = connect_timeout_seconds
        self._schema: SchemaInfo | None = None
        self._problem: str | None = "database not checked yet"
        self._checked = False
        self._newer_revision_seen: str | None = None
        self._usable = asyncio.Event()
        self._trouble = asyncio.Event()
        self._probe_task: asyncio.Task[str | None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        # Work running in worker threads; close() lets it finish before closing the pool, so
        # no connection is left checked out of a disposed engine.
        self._in_threads: set[asyncio.Task[object]] = set()

    @property
    def usable(self) -> bool:
        """True while the last probe or operation found the database reachable and migrated."""
        return self._usable.is_set()

    @property
    def connect_timeout_seconds(self) -> float:
        return self._connect_timeout_seconds

    @property
    def known_down(self) -> bool:
        """True once a probe or an operation found the database unusable, until a probe finds it well.

        Before the first probe has answered this is False: callers on the request path try the
        database rather than assume the worst in the first moments after start.
        """
        return self._checked and not self._usable.is_set()

    @property
    def problem(self) -> str | None:
        return self._problem

    def start(self) -> None:
        """Begin probing in the background; returns at once."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="store-database-supervisor")

    async def close(self) -> None:
        for task in (self._supervisor, self._probe_task):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._supervisor, self._probe_task):
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self._in_threads:
            await asyncio.wait(set(self._in_threads), timeout=self._connect_timeout_seconds + 1)
        self.engine.dispose()

    async def wait_usable(self) -> None:
        await self._usable.wait()

    def report_trouble(self, exc: BaseException) -> None:
        """An operation failed in a way a retry may fix: stop trusting the database until a probe says so."""
        self._set_problem(f"database unreachable: {reason_of(exc)}")

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(engine, *args)`` in a worker thread; transient failures mark the database unusable.

        If the caller is cancelled the work still runs to its end (a thread cannot be stopped).
        """
        try:
            return await self._in_thread(work, self.engine, *args)
        except sa.exc.SQLAlchemyError as exc:
            if is_transient(exc):
                self.report_trouble(exc)
            raise

    async def _in_thread(self, work: Callable[..., T], *args: object) -> T:
        task: asyncio.Task[T] = asyncio.create_task(anyio.to_thread.run_sync(work, *args))
        self._in_threads.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._thread_done)
        return await asyncio.shield(task)

    def _thread_done(self, task: asyncio.Task[object]) -> None:
        self._in_threads.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here too, for callers that were cancelled meanwhile

    async def probe(self) -> str | None:
        """Check now (one probe at a time; concurrent callers share it). None when usable."""
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.create_task(self._probe_once(), name="store-database-probe")
        return await asyncio.shield(self._probe_task)

    async def _probe_once(self) -> str | None:
        problem = await self._in_thread(self._check)
        self._set_problem(problem)
        return problem

    def _check(self) -> str | None:
        """Connect, compare the schema with this build's head, migrate when configured."""
        try:
            if self._schema is None:
                self._schema = load_schema_info()
        except OSError as exc:
            return f"migrations unavailable: {exc}"
        if self._migrate_on_start:
            try:  # as `db upgrade` does: else SQLite cannot open the file, and nothing ever migrates
                ensure_sqlite_directory(self.url)
            except OSError as exc:
                return f"database unreachable: cannot create its directory: {exc}"
        try:
            with self.engine.connect() as connection:
                read_only = read_only_problem(connection)
                problem = read_only or schema_problem(connection, self._schema, on_newer=self._newer_schema)
        except sa.exc.SQLAlchemyError as exc:
            return f"database unreachable: {reason_of(exc)}"
        if problem is None or read_only or not self._migrate_on_start:
            return problem
        log.info("applying migrations (CDS_MIGRATE_ON_START)", extra={"fields": {"database": describe_url(self.url)}})
        try:
            upgrade_database(self.url, connect_timeout_seconds=self._connect_timeout_seconds)
            with self.engine.connect() as connection:
                return schema_problem(connection, self._schema, on_newer=self._newer_schema)
        except DatabaseUnreachable as exc:
            return f"database unreachable: {reason_of(exc.__cause__ or exc)}"
        except sa.exc.SQLAlchemyError as exc:  # the check after migrating
            return f"database unreachable: {reason_of(exc)}"
        except MigrationError as exc:
            problem = f"migrations failed: {reason_of(exc.__cause__ or exc)}"
            if problem != self._problem:  # once per reason, not on every probe (each retry_seconds)
                log.error("migrations failed", extra={"fields": {"reason": str(exc)}})
            return problem
        except Exception as exc:  # a broken migration script: report it, keep the service up and not ready
            problem = f"migrations failed: {reason_of(exc)}"
            if problem != self._problem:
                log.exception("migrations failed")
            return problem

    def _newer_schema(self, revision: str) -> None:
        if revision != self._newer_revision_seen:
            log.warning(
                "database schema is newer than this build; serving on (migrations are additive)",
                extra={"fields": {"revision": revision, "head": self._schema.head if self._schema else None}},
            )
            self._newer_revision_seen = revision

    def _set_problem(self, problem: str | None) -> None:
        self._checked = True
        if problem != self._problem:
            if problem is None:
                log.info("database ready", extra={"fields": {"database": describe_url(self.url)}})
            else:
                log.warning("database not ready", extra={"fields": {"database": describe_url(self.url), "reason": problem}})
        self._problem = problem
        if problem is None:
            self._usable.set()
        else:
            self._usable.clear()
            # Whoever found it (readiness, a store operation), the supervisor must now probe until
            # the database answers: nothing else makes it usable again.
            self._trouble.set()

    async def _supervise(self) -> None:
        while True:
            # Cleared before probing: trouble reported while the probe runs, or just after it
            # found the database well, must send the loop round again, not be wiped out.
            self._trouble.clear()
            if await self.probe() is None:
                await self._trouble.wait()
            else:
                await asyncio.sleep(self._retry_seconds)
