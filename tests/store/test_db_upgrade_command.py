"""``back-knee-cds db upgrade``: migrates CDS_DATABASE_URL, waits a bounded time, fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main
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


def test_default_url_creates_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "var" / "back-knee-cds.sqlite3").is_file()


def test_an_unreachable_database_fails_after_the_wait_in_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql+psycopg://cds:s3cret@127.0.0.1:1/cds")
    assert main(["db", "upgrade", "--wait", "0.3"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: database postgresql+psycopg://cds:***@127.0.0.1:1/cds did not answer within 0.3 s")
    assert "CDS_DATABASE_URL" in last
    assert "waiting up to 0.3 s" in err
    assert "s3cret" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "error: CDS_DATABASE_URL: not a database URL"),
        ("mysql://cds@127.0.0.1/cds", "error: CDS_DATABASE_URL: unsupported database 'mysql'"),
        ("sqlite://", "error: CDS_DATABASE_URL: in-memory SQLite is not supported"),
    ],
)
def test_a_bad_url_is_one_line(url: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert main(["db", "upgrade", "--wait", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
