"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from service.json_response import OrjsonResponse
from service.state import State

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/health/live")
async def live() -> OrjsonResponse:
    """200 while the process runs."""
    return OrjsonResponse({"status": "live"})


class NotReadyBody(BaseModel):
    status: Literal["not ready"]
    reason: str


@router.get("/health/ready", responses={503: {"model": NotReadyBody, "description": "Not ready; the body says why"}})
async def ready(state: State) -> OrjsonResponse:
    """200 when the rules are loaded and the database answers; 503 with the reason otherwise."""
    reason = await state.store.check_ready()
    if reason is not None:
        return OrjsonResponse({"status": "not ready", "reason": reason}, status_code=503)
    return OrjsonResponse({"status": "ready", "rules": state.catalogue.version})


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# HEAD as GET, for load balancers and probes that check with HEAD (405 before). Left out of the
# OpenAPI document: one operation per path and method, and HEAD says nothing GET does not.
router.add_api_route("/health/live", live, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/health/ready", ready, methods=["HEAD"], include_in_schema=False)
