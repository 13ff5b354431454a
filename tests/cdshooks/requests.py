"""Builders for CDS Hooks request bodies used across tests."""

from __future__ import annotations

import uuid
from typing import Any

EMPTY_PREFETCH: dict[str, Any] = {"patient": None, "conditions": None, "observations": None, "familyHistory": None}


def hook_request(
    *,
    patient_id: str = "p1",
    hook: str = "patient-view",
    prefetch: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": patient_id, "userId": "Practitioner/example"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body
