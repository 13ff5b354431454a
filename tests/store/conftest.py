"""Real databases for the store tests: a SQLite file under tmp_path, and a scratch PostgreSQL database.

``database_url`` is an empty database of each kind; ``migrated_url`` one at the Alembic head
(applied by ``upgrade_database``, never ``create_all``); ``absent_database`` one that does not
exist yet and can be made to appear mid-test. PostgreSQL tests need ``CDS_TEST_DATABASE_URL``
(its server is used; each test gets its own database, dropped afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store import upgrade_database
from tests.store.helpers import AbsentDatabase
from tests.support.scratch_postgres import ScratchPostgres, postgres_admin_url

@pytest.fixture
def scratch_postgres() -> Iterator[ScratchPostgres]:
    scratch = ScratchPostgres(admin_url=postgres_admin_url("PostgreSQL store tests skipped"))
    try:
        yield scratch
    finally:
        scratch.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database (no schema) of each kind."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    scratch: ScratchPostgres = request.getfixturevalue("scratch_postgres")
    return scratch.create(scratch.new_name())


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade_database(database_url)
    return database_url


@pytest.fixture
def absent_database(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> AbsentDatabase:
    if dialect == "sqlite":
        # A directory where the file should be: SQLite cannot open it (whoever runs the tests).
        path = tmp_path / "later.sqlite3"
        path.mkdir()
        return AbsentDatabase(url=f"sqlite:///{path}", appear=path.rmdir)
    scratch: ScratchPostgres = request.getfixturevalue("scratch_postgres")
    name = scratch.new_name()
    scratch.created.append(name)  # dropped afterwards if it came to exist
    return AbsentDatabase(url=scratch.url_for(name), appear=lambda: scratch.execute(f'CREATE DATABASE "{name}"'))
