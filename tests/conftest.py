"""Shared fixtures: settings built from keyword arguments, and apps built from them."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.fhir_server import FhirData, FhirTestServer, serve_in_thread
from tests.support.loopback_server import reset_around_test
from tests.support.shared import SHARED_FIXTURES, missing_shared_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

SettingsFactory = Callable[..., Settings]


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once, with the reason, when the shared spec and fixtures are not where tests read them."""
    problem = missing_shared_dir()
    if problem is not None:
        raise pytest.UsageError(problem)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CDS_* variable from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("CDS_") and name != "CDS_TEST_DATABASE_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that call ``configure_logging`` (directly or through the CLI): put the process's logging back."""
    names = ["", "service.security", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "hpack", "h11", "h2", "multipart"]
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}
    record_attributes = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved_attributes = {name: getattr(logging, name) for name in record_attributes}
    yield
    for name, value in saved_attributes.items():
        setattr(logging, name, value)
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the Alembic head (migrated, not create_all), made once per run."""
    from service.store import upgrade_database

    path = tmp_path_factory.mktemp("schema") / "template.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_settings(tmp_path: Path, migrated_sqlite_template: Path) -> SettingsFactory:
    """Settings for one test: a fresh migrated SQLite file (a copy of the template), auth off, unless overridden."""
    database = tmp_path / "cds.sqlite3"

    def build(**overrides: Any) -> Settings:
        if "database_url" not in overrides and not database.exists():
            shutil.copyfile(migrated_sqlite_template, database)
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{database}",
            "auth": "off",
            "patient_key": "test-patient-key-0123456789abcdef",
            "log_format": "text",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    """A client for an app with default test settings, lifespan running."""
    with TestClient(create_app(make_settings()), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="session")
def fhir_server_session() -> Iterator[FhirTestServer]:
    """The loopback FHIR server (tests/support/fhir_server.py), started once per test session."""
    with serve_in_thread(FhirTestServer(FhirData.load(SHARED_FIXTURES))) as server:
        yield server


@pytest.fixture
def fhir_server(fhir_server_session: FhirTestServer) -> Iterator[FhirTestServer]:
    """The loopback FHIR server with default behaviour and no recorded requests for this test."""
    yield from reset_around_test(fhir_server_session)
