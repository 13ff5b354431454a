"""The non-200 responses of each CDS Hooks endpoint, declared for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["ErrorBody", "DISCOVERY_RESPONSES", "CALL_RESPONSES", "FEEDBACK_RESPONSES"]


class ErrorBody(BaseModel):
    error: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_UNAUTHORIZED = {401: _error("Missing or invalid client JWT; the body is always {\"error\": \"unauthorized\"}")}

DISCOVERY_RESPONSES: dict[int | str, dict[str, Any]] = {**_UNAUTHORIZED}

CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed request: bad JSON, a missing hook, hookInstance, context or context.patientId, or a hook the service does not serve"),
    **_UNAUTHORIZED,
    404: _error("No service with that id"),
    412: _error("Required prefetch data is missing and cannot be fetched from an allowed FHIR server"),
    413: _error("Request body over CDS_MAX_BODY_BYTES"),
}

FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every feedback item is stored", "content": {"application/json": {"schema": {"type": "object"}}}},
    400: _error("Malformed feedback: bad outcome, accepted without acceptedSuggestions, or no outcomeTimestamp"),
    **_UNAUTHORIZED,
    404: _error("No service with that id"),
    413: _error("Request body over CDS_MAX_BODY_BYTES"),
    503: _error("The database cannot store the feedback now; retry"),
}
