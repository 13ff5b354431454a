"""What the lifespan owns and the routes use: built once per app, passed in, never global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from service.cdshooks.gathering import Gatherer
from service.cdshooks.jwt_verifier import JwtVerifier
from service.cdshooks.off_loop import FactsRunner
from service.cards import CardBuilder
from service.engine.catalogue import Catalogue
from service.metrics import Metrics
from service.privacy import PatientHasher
from service.settings import Settings
from service.store import Store

__all__ = ["AppState", "State", "app_state", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class AppState:
    settings: Settings
    catalogue: Catalogue
    cards: CardBuilder  # the catalogue's card builder
    metrics: Metrics
    hasher: PatientHasher
    store: Store
    gatherer: Gatherer
    facts_runner: FactsRunner  # where a call's facts are computed, with the validation memo they share
    verifier: JwtVerifier | None = None  # None with CDS_AUTH=off
    # The time of a request; its UTC date is the evaluation date ("today"). Tests fix it.
    clock: Callable[[], datetime] = utc_now


def app_state(request: Request) -> AppState:
    """The app's state, for a route that reads it directly (the hook call: no dependency to solve)."""
    state: AppState = request.app.state.cds
    return state


async def _state(request: Request) -> AppState:
    """``async`` on purpose: FastAPI runs a sync dependency in a worker thread, a thread hop per request."""
    return app_state(request)


State = Annotated[AppState, Depends(_state)]
