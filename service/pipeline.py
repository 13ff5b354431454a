"""FHIR data -> facts -> findings -> cards: the one path shared by the HTTP service and the CLI.

A service computes only the facts its rules read (``Catalogue.fact_definitions_for``), from
the data those facts read. ``evaluate_service`` is the whole path. The HTTP route runs it in two
steps, ``patient_facts`` then ``evaluate_facts``, so that while a call waits for the database (its
suppressions) it holds its small ``PatientFacts`` rather than its parsed prefetch: peak memory
then stops growing with concurrency times body size (``make bench``, heavy workload at 32
connections).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from service.cards import CardBuilder, UuidFactory, new_uuid
from service.cdshooks.models import Card
from service.engine.catalogue import Catalogue
from service.engine.evaluate import evaluate
from service.fhir import PatientFacts, ValidationMemo, WorkerThreadMemo, compute_facts
from service.privacy import stored_reference
from service.store.records import IssuedCard

__all__ = ["Evaluation", "evaluate_facts", "evaluate_service", "patient_facts"]


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
    uuid_factory: UuidFactory = new_uuid,
    cards: CardBuilder | None = None,
) -> Evaluation:
    """Evaluate one service's rules over FHIR resources and/or Bundles (any mix)."""
    facts = patient_facts(data, catalogue=catalogue, service_id=service_id, patient_id=patient_id, today=today)
    return evaluate_facts(
        facts,
        catalogue=catalogue,
        service_id=service_id,
        suppressed=suppressed,
        base_url=base_url,
        uuid_factory=uuid_factory,
        cards=cards,
    )


def patient_facts(
    data: Iterable[dict[str, Any]],
    *,
    catalogue: Catalogue,
    service_id: str,
    patient_id: str | None,
    today: date,
    memo: ValidationMemo | WorkerThreadMemo | None = None,
) -> PatientFacts:
    """The facts one service's rules read, about one patient: the part of the path that reads the FHIR data."""
    definitions = catalogue.fact_definitions_for(service_id)
    return compute_facts(data, patient_id=patient_id, today=today, definitions=definitions, memo=memo)


def evaluate_facts(
    facts: PatientFacts,
    *,
    catalogue: Catalogue,
    service_id: str,
    suppressed: frozenset[str] = frozenset(),
    base_url: str,
    uuid_factory: UuidFactory = new_uuid,
    cards: CardBuilder | None = None,
) -> Evaluation:
    """One service's rules over ``facts``: the findings, as cards and as audit records.

    ``cards``: the catalogue's card builder, kept by the caller across calls (else built here).
    """
    builder = cards or CardBuilder(catalogue)
    built: list[Card] = []
    issued: list[IssuedCard] = []
    for finding in evaluate(facts, catalogue, service_id=service_id, suppressed=suppressed):
        card = builder.card(finding, base_url=base_url, uuid_factory=uuid_factory)
        built.append(card)
        issued.append(
            IssuedCard(
                uuid=str(card.uuid),
                rule_id=finding.rule.id,
                rule_version=finding.rule.version,
                indicator=finding.rule.indicator,
                evidence=tuple([stored_reference(reference) for reference in finding.references]),
                suggestion_uuids=tuple([str(s.uuid) for s in card.suggestions]) if card.suggestions else (),
            )
        )
    return Evaluation(cards=built, issued=tuple(issued), skipped=facts.skipped)
