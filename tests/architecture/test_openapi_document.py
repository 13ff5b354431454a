"""openapi/openapi.json is the app's own document, and declares every real response."""

from __future__ import annotations

import json

import pytest

from service.openapi_doc import openapi_json
from tests.conftest import REPO_ROOT


def test_the_document_ignores_the_deployment_settings_of_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """`back-knee-cds openapi` run where a deployment's variables are set: a bad one stopped it with a
    traceback, a trusted clients file it cannot read with an error, and the rest changed the document."""
    monkeypatch.setenv("CDS_MAX_BODY_BYTES", "5MB")
    monkeypatch.setenv("CDS_TRUSTED_CLIENTS_FILE", "/nonexistent/trusted-clients.yaml")
    monkeypatch.setenv("CDS_RULES_DIR", "/nonexistent/rules")
    assert openapi_json() == (REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")


def test_committed_openapi_matches_the_app() -> None:
    committed = (REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_json(), "openapi/openapi.json drifted: run `make openapi` and commit it"


def test_error_responses_are_declared() -> None:
    paths = json.loads(openapi_json())["paths"]
    call = paths["/cds-services/{service_id}"]["post"]["responses"]
    # 503: with CDS_AUTH=jwt, when the database cannot record the token's jti (tests/store/test_replay.py)
    assert {"200", "400", "401", "404", "412", "413", "503"} <= set(call)
    feedback = paths["/cds-services/{service_id}/feedback"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "503"} <= set(feedback)
    assert {"401", "503"} <= set(paths["/cds-services"]["get"]["responses"])
    assert "503" in paths["/health/ready"]["get"]["responses"]


def test_no_422_is_declared_and_every_error_response_has_its_body() -> None:
    """Validation errors are 400 ``{"error": ...}`` here; FastAPI's default 422 would be a lie."""
    document = json.loads(openapi_json())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, f"{method.upper()} {path}"
            for status, response in responses.items():
                if not status.startswith("2"):
                    assert response.get("content"), f"{method.upper()} {path} {status} has no body schema"
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])
