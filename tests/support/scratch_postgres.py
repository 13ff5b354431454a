"""Scratch PostgreSQL databases for tests, on the server of ``CDS_TEST_DATABASE_URL``.

Each test (or module) that needs PostgreSQL gets a database of its own with a unique name,
dropped afterwards with whatever connections it still has; without the variable the test is
skipped, saying so (CI sets it; see ``.ci/run``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = ["PG_ENV", "ScratchPostgres", "postgres_admin_url", "scratch_database"]

PG_ENV = "CDS_TEST_DATABASE_URL"


def postgres_admin_url(skipped: str) -> str:
    """The URL of ``CDS_TEST_DATABASE_URL``; when unset the test is skipped with ``skipped`` as the reason."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: {skipped} (CI sets it; see .ci/run)")
    return url


@dataclass
class ScratchPostgres:
    """Creates and drops databases on the test server, each with a unique name."""

    admin_url: str
    created: list[str] = field(default_factory=list)
    prefix: str = "bkc_store"

    def url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def new_name(self) -> str:
        return f"{self.prefix}_{uuid.uuid4().hex[:12]}"

    def execute(self, statement: str) -> None:
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            engine.dispose()

    def create(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url_for(name)

    def terminate_connections(self, name: str) -> None:
        """What a server restart does to the service's pooled connections."""
        self.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")

    def drop_all(self) -> None:
        for name in self.created:
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(admin_url: str, *, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on ``admin_url``'s server, dropped when the block ends."""
    scratch = ScratchPostgres(admin_url, prefix=prefix)
    try:
        yield scratch.create(scratch.new_name())
    finally:
        scratch.drop_all()
