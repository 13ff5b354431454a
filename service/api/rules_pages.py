"""``GET /rules`` and ``GET /rules/{rule_id}``: the catalogue as JSON or as a clinician's page.

SEAM: filled in with the rule catalogue.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.json_response import OrjsonResponse

__all__ = ["router"]

router = APIRouter(tags=["Rules"])


@router.get("/rules")
async def list_rules() -> OrjsonResponse:
    return OrjsonResponse({"rules": []})
