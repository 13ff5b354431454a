"""``back-knee-cds db upgrade``: migrates CDS_DATABASE_URL, waits a bounded time, fails in one line."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.cli import main
from service.store import migrate
from service.store.migrate import load_schema_info
from tests.store.helpers import rows


def test_upgrade_migrates_the_configured_database(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    head = load_schema_info().head
    assert capsys.readouterr().out.strip().endswith(f"is at revision {head}")
    assert rows(database_url, "SELECT version_num FROM alembic_version") == [(head,)]
    assert main(["db", "upgrade"]) == 0  # again: nothing to do


def test_a_copy_installed_without_its_migrations_fails_in_one_line(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-editable install leaves migrations/ behind in the checkout: say so, not a traceback."""
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path / "site-packages" / "migrations")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Alembic migrations not found at {tmp_path / 'site-packages' / 'migrations'}; ")
    assert "pip install -e ." in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_default_url_creates_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "var" / "back-knee-cds.sqlite3").is_file()


@pytest.mark.parametrize("query", ["?password=s3cret", "?sslmode=disable&password=s3cret", "?sslpassword=s3cret"])
def test_a_password_in_the_query_string_is_masked_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], query: str
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", f"postgresql+psycopg://cds@127.0.0.1:1/cds{query}")
    assert main(["db", "upgrade", "--wait", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "could not be connected to within 0.1 s" in err and "s3cret" not in err and "=***" in err


def test_an_unreachable_database_fails_after_the_wait_in_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql+psycopg://cds:s3cret@127.0.0.1:1/cds")
    assert main(["db", "upgrade", "--wait", "0.3"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: database postgresql+psycopg://cds:***@127.0.0.1:1/cds could not be connected to within 0.3 s")
    assert "CDS_DATABASE_URL" in last
    assert "waiting up to 0.3 s" in err
    assert "s3cret" not in err and "Traceback" not in err


def test_a_database_that_does_not_exist_is_waited_for_and_not_said_to_be_silent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server answers "database ... does not exist" (an init job may still create it): waited
    for as for a server not up yet, but the end no longer says it "did not answer"."""
    server = os.environ.get("CDS_TEST_DATABASE_URL")
    if not server or not server.startswith("postgresql"):
        pytest.skip("CDS_TEST_DATABASE_URL (PostgreSQL) is not set: CI sets it; see .ci/run")
    missing = sa.make_url(server).set(database=f"back_knee_missing_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("CDS_DATABASE_URL", missing.render_as_string(hide_password=False))
    assert main(["db", "upgrade", "--wait", "0.3"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"/{missing.database} could not be connected to within 0.3 s: " in last
    assert "does not exist" in last


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "error: CDS_DATABASE_URL: not a database URL"),
        ("mysql://cds@127.0.0.1/cds", "error: CDS_DATABASE_URL: unsupported database 'mysql'"),
        ("sqlite://", "error: CDS_DATABASE_URL: in-memory SQLite is not supported"),
        # Tracebacks before: the usual SQLAlchemy spellings of drivers this build does not ship, a broken port.
        ("postgresql+psycopg2://cds@127.0.0.1/cds", "error: CDS_DATABASE_URL: driver 'psycopg2' is not installed; use postgresql+psycopg://"),
        ("postgresql+asyncpg://cds@127.0.0.1/cds", "error: CDS_DATABASE_URL: driver 'asyncpg' is not installed"),
        ("postgresql+psycopg://cds@[::1/cds", "error: CDS_DATABASE_URL: not a database URL"),
    ],
)
def test_a_bad_url_is_one_line(url: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert main(["db", "upgrade", "--wait", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_a_database_newer_than_this_build_is_left_alone(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older build's `db upgrade` (a rollback, an init job) against a newer release's schema:
    nothing to apply, and it serves on it. Before: Alembic's "Can't locate revision" traceback."""
    engine = sa.create_engine(migrated_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    monkeypatch.setenv("CDS_DATABASE_URL", migrated_url)
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(f"is at revision 9999 (newer than this build's {load_schema_info().head}: nothing to apply)")
    assert rows(migrated_url, "SELECT version_num FROM alembic_version") == [("9999",)]
