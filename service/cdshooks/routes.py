"""CDS Hooks endpoints: discovery, service call, feedback. Thin: each reads as its pipeline."""

from __future__ import annotations

import logging
import time
from datetime import UTC, date
from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.cdshooks.body import parse_json_body, read_body, read_json_body, validate_body
from service.cdshooks.direct_route import DirectRoute
from service.cdshooks.errors import HookRequestError, StoreUnavailableError, UnknownService
from service.cdshooks.gathering import Gathered
from service.cdshooks.models import (
    CardsResponse,
    DiscoveryResponse,
    FeedbackItem,
    FeedbackRequest,
    HookRequest,
    ServiceDescriptor,
)
from service.cdshooks.off_loop import CallFacts
from service.cdshooks.openapi_docs import (
    BROKEN_FHIR_HOOK_REQUEST_EXAMPLE,
    CALL_RESPONSES,
    DISCOVERY_RESPONSES,
    FEEDBACK_REQUEST_EXAMPLE,
    FEEDBACK_RESPONSES,
    HOOK_REQUEST_EXAMPLE,
    request_body,
)
from service.cdshooks.paths import CDS_PREFIX
from service.cdshooks.public_url import public_base_url
from service.engine.catalogue import ServiceDefinition
from service.fhir import PatientFacts
from service.json_response import OrjsonResponse
from service.logs import bind_request_fields
from service.pipeline import evaluate_facts, patient_facts
from service.state import AppState, State, app_state
from service.store import FeedbackMismatch, FeedbackRecord, InvocationRecord, StoreUnavailable

__all__ = ["router"]

log = logging.getLogger("service.cdshooks")
router = APIRouter(prefix=CDS_PREFIX, tags=["CDS Hooks"])


def _service_or_404(state: AppState, service_id: str) -> ServiceDefinition:
    service = state.catalogue.service(service_id)
    if service is None:
        raise UnknownService(f"no CDS service with id '{service_id}'; GET /cds-services lists them")
    return service


@router.get("", response_model=DiscoveryResponse, responses=DISCOVERY_RESPONSES)
async def discovery(state: State) -> OrjsonResponse:
    """CDS Hooks discovery: every service, once per hook it serves."""
    services = [
        ServiceDescriptor(hook=hook, id=service.id, title=service.title, description=service.description, prefetch=service.prefetch)
        for service in state.catalogue.services.values()
        for hook in service.hooks
    ]
    return OrjsonResponse(DiscoveryResponse(services=services).model_dump(exclude_none=True))


async def call_service(service_id: str, request: Request) -> Response:
    """Run a service's rules over the patient's data and answer with cards."""
    started = time.perf_counter()
    state = app_state(request)  # not the State dependency: FastAPI solving it cost more than the read
    received_at = state.clock()
    service = _service_or_404(state, service_id)
    settings = state.settings
    body = await read_body(request, max_bytes=settings.max_body_bytes)
    sent_bytes = len(body)
    async with state.facts_runner.call(sent_bytes=sent_bytes) as call_facts:  # a large body waits for its turn unparsed
        data = parse_json_body(body, max_depth=settings.max_json_depth)
        del body
        hook_request = validate_body(HookRequest, data)
        bind_request_fields(hookInstance=hook_request.hookInstance, service=service_id)  # on every later log line of this call
        refused = service.refuses_hook(hook_request.hook)
        if refused is not None:
            raise HookRequestError(refused)
        links_base = public_base_url(state, request)  # a Host no link can start with is a 400 before any fetch
        gathered = await state.gatherer.gather(hook_request, service.prefetch, while_fetching=call_facts.while_fetching())
        hook, hook_instance, patient_id = hook_request.hook, hook_request.hookInstance, hook_request.patient_id
        patient_hash = state.hasher(patient_id)
        today = received_at.date()
        facts = await _patient_facts(state, call_facts, service_id, gathered, sent_bytes=sent_bytes, patient_id=patient_id, today=today)
        # Waiting for the database below, this call holds its facts, not its parsed prefetch: peak
        # memory must not grow with concurrent calls times body size (make bench, heavy workload).
        del data, hook_request, gathered
    suppressed = await state.store.suppressed_rules(patient_hash, today)
    evaluation = evaluate_facts(
        facts,
        catalogue=state.catalogue,
        service_id=service_id,
        suppressed=suppressed,
        base_url=links_base,
        cards=state.cards,
    )
    # CardsResponse as it is sent: its cards (systemActions is never set), dumped without first
    # validating them again into a CardsResponse (3.3 -> 2.4 us with the typical call's card).
    body = {"cards": [card.model_dump(exclude_none=True) for card in evaluation.cards]}
    duration_ms = (time.perf_counter() - started) * 1000
    state.store.record_invocation(
        InvocationRecord(
            service_id=service_id,
            hook=hook,
            hook_instance=hook_instance,
            patient_hash=patient_hash,
            status=200,
            duration_ms=duration_ms,
            catalogue_version=state.catalogue.version,
            received_at=received_at,
            cards=evaluation.issued,
            skipped_resources=evaluation.skipped,
        )
    )
    for issued in evaluation.issued:
        state.metrics.record_card(issued.rule_id)
    # On the request's log line (service.cdshooks.request_context), which they make "hook answered".
    bind_request_fields(patient=patient_hash[:16], cards=len(evaluation.cards))
    return OrjsonResponse(body, headers={"Cache-Control": "no-store"})


async def _patient_facts(
    state: AppState, call_facts: CallFacts, service_id: str, gathered: Gathered, *, sent_bytes: int, patient_id: str | None, today: date
) -> PatientFacts:
    """The facts the service's rules read: on the event loop, or for a large call (``off_loop``) in
    a worker thread, so that the loop goes on answering meanwhile."""
    values = [value for value in gathered.values.values() if isinstance(value, dict)]
    facts_of = partial(patient_facts, values, catalogue=state.catalogue, service_id=service_id, patient_id=patient_id, today=today)
    return await call_facts.compute(facts_of, resources=gathered.resources, size_bytes=sent_bytes + gathered.fetched_bytes)


# Registered after its definition: add_api_route is where FastAPI takes a route class. DirectRoute
# hands call_service its path text and Request without FastAPI solving parameters per call (~30 us).
router.add_api_route(
    "/{service_id}",
    call_service,
    methods=["POST"],
    response_model=CardsResponse,
    responses=CALL_RESPONSES,
    openapi_extra=request_body(
        HookRequest, examples={"knee-osteoarthritis-and-high-bmi": HOOK_REQUEST_EXAMPLE, "broken-fhir-in-prefetch": BROKEN_FHIR_HOOK_REQUEST_EXAMPLE}
    ),
    route_class_override=DirectRoute,
)


@router.post(
    "/{service_id}/feedback",
    responses=FEEDBACK_RESPONSES,
    openapi_extra=request_body(FeedbackRequest, examples={"overridden-patient-declined": FEEDBACK_REQUEST_EXAMPLE}),
)
async def feedback(service_id: str, request: Request, state: State) -> Response:
    """Store feedback on cards; 200 only once stored, 503 when the database cannot store it."""
    _service_or_404(state, service_id)
    settings = state.settings
    data = await read_json_body(request, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth)
    feedback_request = validate_body(FeedbackRequest, data)
    records = [_feedback_record(service_id, item) for item in feedback_request.feedback]
    try:
        outcomes = await state.store.save_feedback(
            records,
            received_at=state.clock(),
        )
    except StoreUnavailable as exc:
        log.warning("feedback answered 503", extra={"fields": {"service": service_id, "reason": str(exc)}})
        raise StoreUnavailableError("feedback could not be stored, or not confirmed stored; retry (a retried item is stored once)") from None
    except FeedbackMismatch as exc:
        raise HookRequestError(f"{exc}; nothing of this request was stored") from None
    for record, outcome in zip(records, outcomes, strict=True):
        if not outcome.duplicate:
            state.metrics.feedback.labels(outcome=record.outcome).inc()
    return OrjsonResponse({})


def _feedback_record(service_id: str, item: FeedbackItem) -> FeedbackRecord:
    reason = item.overrideReason.reason if item.overrideReason else None
    timestamp = item.outcomeTimestamp
    if timestamp.tzinfo is None:  # RFC 3339 requires an offset; read a bare one as UTC
        timestamp = timestamp.replace(tzinfo=UTC)
    return FeedbackRecord(
        service_id=service_id,
        card_uuid=item.card,
        outcome=item.outcome,
        outcome_timestamp=timestamp,
        accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
        override_reason_code=reason.code if reason else None,
        override_reason_system=reason.system if reason else None,
        user_comment=item.overrideReason.userComment if item.overrideReason else None,
    )
