"""FHIR data -> facts -> findings -> cards: the one path shared by the HTTP service and the CLI.

SEAM: wired end to end; the facts layer, engine and card builder plug in here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from service.cdshooks.models import Card
from service.engine.catalogue import Catalogue
from service.store.records import IssuedCard

__all__ = ["Evaluation", "evaluate_service"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    cards: list[Card]
    issued: tuple[IssuedCard, ...]  # what the audit record stores about each card
    skipped: tuple[str, ...]  # relevant resources that failed validation


def evaluate_service(
    data: Iterable[dict[str, Any]],
    *,
    catalogue: Catalogue,
    service_id: str,
    patient_id: str | None,
    today: date,
    suppressed: frozenset[str] = frozenset(),
    base_url: str,
    uuid_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Evaluation:
    """Evaluate one service's rules over FHIR resources and/or Bundles (any mix)."""
    return Evaluation(cards=[], issued=(), skipped=())
