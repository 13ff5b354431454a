"""The real fact definitions from rules/, loaded once for the facts tests."""

from __future__ import annotations

import pytest

from service.fhir import FactDefinitions, load_fact_definitions
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def definitions() -> FactDefinitions:
    return load_fact_definitions(REPO_ROOT / "rules")
