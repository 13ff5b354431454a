"""Pydantic models of the CDS Hooks 2.0 wire format.

Tolerant in, strict out: request-side models ignore unknown fields (1.0 and 3.0 clients send
some) and every optional field defaults to ``None``; response-side models forbid extra fields
and are serialised with ``exclude_none`` because CDS Hooks forbids null and empty values
(spec section "JSON", digest section 0).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.engine.templates import SUMMARY_LIMIT

__all__ = [
    "Action",
    "Card",
    "CardsResponse",
    "Coding",
    "DiscoveryResponse",
    "FeedbackItem",
    "FeedbackRequest",
    "FhirAuthorization",
    "HookRequest",
    "Link",
    "OverrideReason",
    "ServiceDescriptor",
    "Source",
    "Suggestion",
    "AcceptedSuggestion",
]


class _Incoming(BaseModel):
    """Requests: ignore what we do not know (CDS Hooks: services should ignore unknown fields)."""

    model_config = ConfigDict(extra="ignore")


class _Outgoing(BaseModel):
    """Responses: emit only what the spec defines."""

    model_config = ConfigDict(extra="forbid")


# --- shared -------------------------------------------------------------------------------


class Coding(_Outgoing):
    """CDS Hooks' own cut-down Coding (``display`` is required for override reasons)."""

    # Frozen: a rule's topic and override-reason Codings are built once and shared by its cards.
    model_config = ConfigDict(extra="ignore", frozen=True)

    code: str = Field(min_length=1)
    system: str = Field(min_length=1)
    display: str | None = None


# --- discovery ------------------------------------------------------------------------------


class ServiceDescriptor(_Outgoing):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None
    extension: dict[str, Any] | None = None


class DiscoveryResponse(_Outgoing):
    services: list[ServiceDescriptor]


# --- request ------------------------------------------------------------------------------


class FhirAuthorization(_Incoming):
    """OAuth token for ``fhirServer``: transient, never logged or stored.

    ``subject`` and ``patient`` are tolerated when absent (1.0 clients, non-patient scopes).
    """

    # RFC 6750's b64token, what an Authorization: Bearer header may carry; anything else (non-ASCII,
    # spaces, control characters) could not be sent, so the call is refused before any fetch.
    access_token: str = Field(min_length=1, pattern=r"^[A-Za-z0-9\-._~+/]+=*$", repr=False)
    token_type: str = "Bearer"
    # An OAuth lifetime in seconds; bounded to 64 bits, as the JSON parser and the schema are.
    expires_in: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


# What ``_patient_id_required`` checks, said in the JSON schema (a non-blank patientId).
_CONTEXT_SCHEMA: dict[str, Any] = {
    "required": ["patientId"],
    "properties": {"patientId": {"type": "string", "minLength": 1, "pattern": "\\S"}},
}


def prefetch_value_problem(value: object) -> str | None:
    """Why a prefetch value is neither a FHIR resource nor null (None when it is one): the one
    decision the service (a 400) and ``evaluate`` make about it."""
    if value is None or (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
        return None
    if isinstance(value, dict):
        got = "an object without resourceType"
    else:
        got = {list: "a list", str: "a string"}.get(type(value), type(value).__name__)
    return f"must be a FHIR resource (a JSON object with resourceType) or null, got {got}"


class HookRequest(_Incoming):
    hook: str = Field(min_length=1)
    # A UUID in CDS Hooks; bounded because it is stored with every audit record.
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any] = Field(json_schema_extra=_CONTEXT_SCHEMA)
    # Each value is a FHIR resource (a Bundle for searches) or null for "no data"; anything else is a 400.
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("prefetch")
    @classmethod
    def _prefetch_values_are_resources(cls, prefetch: dict[str, Any] | None) -> dict[str, Any] | None:
        # Every key, declared by the service or not: the OpenAPI schema is one for all services.
        for key, value in (prefetch or {}).items():
            problem = prefetch_value_problem(value)
            if problem is not None:
                raise ValueError(f"prefetch key '{key}' {problem}")
        return prefetch

    @model_validator(mode="after")
    def _patient_id_required(self) -> HookRequest:
        patient_id = self.context.get("patientId")
        if not isinstance(patient_id, str) or not patient_id.strip():
            raise ValueError("context.patientId is required and must be a non-empty string")
        return self

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])


# --- response -----------------------------------------------------------------------------


class Source(_Outgoing):
    model_config = ConfigDict(frozen=True)  # shared by a rule's cards (service/cards.py)

    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Outgoing):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Outgoing):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Outgoing):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Outgoing):
    uuid: str | None = None
    summary: str = Field(max_length=SUMMARY_LIMIT)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _suggestions_need_selection_behavior(self) -> Card:
        # cds-resp-6: suggestions imply selectionBehavior.
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("a card with suggestions needs selectionBehavior")
        return self


class CardsResponse(_Outgoing):
    cards: list[Card]
    systemActions: list[Action] | None = None


# --- feedback -----------------------------------------------------------------------------


class AcceptedSuggestion(_Incoming):
    id: str = Field(min_length=1)


class OverrideReason(_Incoming):
    reason: Coding | None = None
    userComment: str | None = None


# RFC 3339 date-time; without an offset it is read as UTC (tolerant reader).
_RFC3339_DATE_TIME = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$"


class FeedbackItem(_Incoming):
    # What ``_accepted_needs_suggestions`` checks, said in the JSON schema.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"outcome": {"const": "accepted"}}, "required": ["outcome"]},
            "then": {"required": ["acceptedSuggestions"], "properties": {"acceptedSuggestions": {"type": "array", "minItems": 1}}},
        }
    )

    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime = Field(json_schema_extra={"pattern": _RFC3339_DATE_TIME})

    @field_validator("outcomeTimestamp", mode="before")
    @classmethod
    def _rfc3339_string(cls, value: object) -> object:
        # CDS Hooks: a string; pydantic alone would also take 0 or "1700000000" as a Unix time.
        if not isinstance(value, str) or not re.match(_RFC3339_DATE_TIME, value):
            raise ValueError("must be an RFC 3339 date-time string such as 2025-01-10T14:05:00Z")
        return value

    @field_validator("outcomeTimestamp")
    @classmethod
    def _within_the_calendar_in_utc(cls, value: datetime) -> datetime:
        # Stored and compared in UTC: 9999-12-31T23:59:59-05:00 has no UTC time in the calendar.
        if value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("must fall within the years 0001 to 9999 once converted to UTC") from None
        return value

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an 'accepted' outcome needs acceptedSuggestions")
        return self


class FeedbackRequest(_Incoming):
    feedback: list[FeedbackItem] = Field(min_length=1)
