"""docker-compose.yml configures the service with settings it accepts (a typo there only shows at `up`)."""

from __future__ import annotations

import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO_ROOT


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_cds_environment_is_valid_settings_for_local_testing(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _compose()["services"]["cds"]["environment"]
    # YAML reads a bare `off` as False; compose would then pass "false" and the service would refuse it.
    assert all(isinstance(value, str) for value in environment.values()), environment
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.auth == "off"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@db:5432/" in settings.database_url


def test_cds_waits_for_a_healthy_postgres() -> None:
    services = _compose()["services"]
    assert services["cds"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in services["db"]["healthcheck"]["test"]
