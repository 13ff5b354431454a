"""openapi/openapi.json is the app's own document, and declares every real response."""

from __future__ import annotations

import json

from service.openapi_doc import openapi_json
from tests.conftest import REPO_ROOT


def test_committed_openapi_matches_the_app() -> None:
    committed = (REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_json(), "openapi/openapi.json drifted: run `make openapi` and commit it"


def test_error_responses_are_declared() -> None:
    paths = json.loads(openapi_json())["paths"]
    call = paths["/cds-services/{service_id}"]["post"]["responses"]
    assert {"200", "400", "401", "404", "412", "413"} <= set(call)
    feedback = paths["/cds-services/{service_id}/feedback"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "503"} <= set(feedback)
    assert "401" in paths["/cds-services"]["get"]["responses"]
    assert "503" in paths["/health/ready"]["get"]["responses"]
