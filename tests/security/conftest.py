"""Apps with JWT authentication on, trusted clients files written per test, and a loopback JWKS host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from tests.security.jwks_host import JwksHost, serve_jwks_host
from tests.security.keys import ClientKey, make_key
from tests.support.loopback_server import reset_around_test

ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"
DISCOVERY = f"{BASE}/cds-services"

SecureClient = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(scope="session")
def es384_key() -> ClientKey:
    return make_key("ES384", kid="ehr-es384")


@pytest.fixture(scope="session")
def rs384_key() -> ClientKey:
    return make_key("RS384", kid="ehr-rs384")


@pytest.fixture(scope="session")
def _jwks_host_session() -> Iterator[JwksHost]:
    with serve_jwks_host() as host:
        yield host


@pytest.fixture
def jwks_host(_jwks_host_session: JwksHost) -> Iterator[JwksHost]:
    """The loopback JWKS host with nothing published and no hits counted, for this test."""
    yield from reset_around_test(_jwks_host_session)


def write_clients(path: Path, clients: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(clients, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def secure_client(make_settings: Callable[..., Any], tmp_path: Path) -> SecureClient:
    """``with secure_client(clients, **settings) as client:`` an app with CDS_AUTH=jwt trusting ``clients``.

    Every app built in one test shares the test's SQLite file, so a second app is "the same
    service after a restart".
    """

    @contextmanager
    def build(clients: list[dict[str, Any]] | None, **overrides: Any) -> Iterator[TestClient]:
        if clients is not None:
            overrides.setdefault("trusted_clients_file", write_clients(tmp_path / "trusted-clients.yaml", clients))
        settings = make_settings(auth="jwt", **overrides)
        with TestClient(create_app(settings), base_url=BASE) as client:
            yield client

    return build


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line with its structured fields (``caplog.text`` shows only the message)."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in caplog.records)
