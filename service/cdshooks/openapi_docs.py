"""What the OpenAPI document says about the CDS Hooks endpoints beyond what FastAPI infers.

The service-call and feedback routes read their bodies themselves (size and depth limits come
before parsing), so FastAPI cannot see their request models. :func:`request_body` references
them from the route, and :func:`install_openapi` puts their schemas into the document's
components and narrows the path and ``hook`` to what this app's catalogue serves, so that a
client generator or a fuzzer (schemathesis in ``make fuzz``) builds requests that reach the rules.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.cdshooks.models import FeedbackRequest, HookRequest
from service.cdshooks.paths import CDS_PREFIX, is_cds_path

__all__ = [
    "ErrorBody",
    "DISCOVERY_RESPONSES",
    "CALL_RESPONSES",
    "FEEDBACK_RESPONSES",
    "HOOK_REQUEST_EXAMPLE",
    "FEEDBACK_REQUEST_EXAMPLE",
    "BROKEN_FHIR_HOOK_REQUEST_EXAMPLE",
    "request_body",
    "install_openapi",
]

_COMPONENT = "#/components/schemas/{model}"
CALL_PATH = CDS_PREFIX + "/{service_id}"
FEEDBACK_PATH = CDS_PREFIX + "/{service_id}/feedback"


class ErrorBody(BaseModel):
    error: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_UNAUTHORIZED = {401: _error("Missing or invalid client JWT; the body is always {\"error\": \"unauthorized\"}")}
_REPLAY_UNCHECKED = _error(
    "CDS_AUTH=jwt: the database cannot record the token's jti against replay now; retry after Retry-After seconds"
)

DISCOVERY_RESPONSES: dict[int | str, dict[str, Any]] = {**_UNAUTHORIZED, 503: _REPLAY_UNCHECKED}

CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(
        "Malformed request: bad JSON, a compressed body (Content-Encoding), a missing hook, hookInstance, context or "
        "context.patientId, or a hook the service does not serve"
    ),
    **_UNAUTHORIZED,
    404: _error("No service with that id"),
    412: _error("Required prefetch data is missing and cannot be fetched from an allowed FHIR server"),
    413: _error("Request body over CDS_MAX_BODY_BYTES, or a prefetch holding more than CDS_MAX_PREFETCH_RESOURCES resources"),
    503: _REPLAY_UNCHECKED,
}

FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every feedback item is stored", "content": {"application/json": {"schema": {"type": "object"}}}},
    400: _error(
        "Malformed feedback (bad JSON, a compressed body, bad outcome, accepted without acceptedSuggestions, no outcomeTimestamp), or an item "
        "that contradicts a known card (a suggestion the card never had, a card another service issued); nothing is stored"
    ),
    **_UNAUTHORIZED,
    404: _error("No service with that id"),
    413: _error("Request body over CDS_MAX_BODY_BYTES"),
    503: _error(
        "The database cannot store the feedback now, or confirm it stored (a retried item is stored once), or "
        "(CDS_AUTH=jwt) record the token's jti against replay: retry after Retry-After seconds"
    ),
}

def _searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    """A searchset Bundle as an EHR sends it under a prefetch key (for the examples below)."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource} for resource in resources]}


# A patient-view call with complete prefetch: a 66-year-old with active knee osteoarthritis and a
# BMI of 31.2 (codes from shared/reference/clinical-codes.md: SNOMED 239873007, LOINC 39156-5).
HOOK_REQUEST_EXAMPLE: dict[str, Any] = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"patientId": "example", "userId": "Practitioner/example"},
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "example", "gender": "female", "birthDate": "1959-04-02"},
        "conditions": _searchset(
            {
                "resourceType": "Condition",
                "id": "knee-oa",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "239873007", "display": "Osteoarthritis of knee"}]},
                "subject": {"reference": "Patient/example"},
                "onsetDateTime": "2021-03-14",
            }
        ),
        "observations": _searchset(
            {
                "resourceType": "Observation",
                "id": "bmi",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5", "display": "Body mass index (BMI) [Ratio]"}]},
                "subject": {"reference": "Patient/example"},
                "effectiveDateTime": "2025-01-10",
                "valueQuantity": {"value": 31.2, "unit": "kg/m2", "system": "http://unitsofmeasure.org", "code": "kg/m2"},
            }
        ),
        # FastAPI drops nulls from the document; an empty searchset also means "no data".
        "familyHistory": {"resourceType": "Bundle", "type": "searchset", "total": 0},
    },
}

# Structurally broken FHIR inside an otherwise valid call: answered 200 (the resources are
# skipped and reported in the audit record), never 4xx or 5xx (interface.md decision 10).
BROKEN_FHIR_HOOK_REQUEST_EXAMPLE: dict[str, Any] = {
    "hook": "patient-view",
    "hookInstance": "0b3c1a0e-6f55-4d8e-9a53-5b8f5a1d2c77",
    "context": {"patientId": "broken"},
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "broken", "birthDate": "sometime in 1960", "deceasedBoolean": "no"},
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Condition", "id": "c1", "code": "knee pain", "onsetDateTime": 20210314}},
                {"resource": {"resourceType": "Condition", "id": "c2", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "239873007"}]}, "clinicalStatus": "active"}},
                {"resource": "not a resource"},
                {},
            ],
        },
        "observations": _searchset(
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "effectiveDateTime": "2024-13-45",
                "valueQuantity": {"value": "eighty", "unit": "stone", "code": "[stone]"},
            }
        ),
        "familyHistory": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "FamilyMemberHistory", "condition": 7}}]},
    },
}

FEEDBACK_REQUEST_EXAMPLE: dict[str, Any] = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                # The system is set from the catalogue by install_openapi: a reason in another system suppresses nothing.
                "reason": {"code": "patient-declined", "system": "", "display": "Patient declined"},
                "userComment": "Discussed at the last visit",
            },
            "outcomeTimestamp": "2025-01-10T14:05:00Z",
        }
    ]
}


def request_body(model: type[BaseModel], *, examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses ``model`` from the body itself."""
    schema = {"$ref": _COMPONENT.format(model=model.__name__)}
    named = {name: {"summary": name.replace("-", " "), "value": value} for name, value in examples.items()}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "examples": named}}}}


def install_openapi(
    app: FastAPI,
    *,
    hooks_by_service: Mapping[str, Sequence[str]],
    prefetch_by_service: Mapping[str, Mapping[str, str]],
    override_reason_system: str,
) -> None:
    """Complete ``app.openapi()`` with the request models and this catalogue's ids, hooks, prefetch
    and override-reason system."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _add_request_schemas(document)
            _narrow_to_catalogue(document, hooks_by_service)
            _describe_prefetch(document, prefetch_by_service)
            _complete_feedback_example(document, override_reason_system)
            _require_client_jwt(document)
            _drop_unsent_validation_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_unsent_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI declares a 422 for every operation with parameters; this app answers a request that
    fails validation with a 400 ``{"error": ...}`` (``errors.install_error_handlers``), never a 422."""
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"{_COMPONENT.format(model=name)}"' not in json.dumps(document):
            schemas.pop(name, None)


def _add_request_schemas(document: dict[str, Any]) -> None:
    _, definitions = models_json_schema(
        [(HookRequest, "validation"), (FeedbackRequest, "validation")], ref_template=_COMPONENT
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in definitions["$defs"].items():
        if name not in components:
            components[name] = schema
        elif _without_defaults(components[name]) != _without_defaults(schema):
            # A model used both ways (Coding) must accept what it emits; one schema serves both.
            raise RuntimeError(f"OpenAPI component {name!r} differs between request and response use; split the model")


def _without_defaults(schema: Any) -> Any:
    """The schema minus ``default`` keys, which FastAPI's response schemas omit."""
    if isinstance(schema, dict):
        return {key: _without_defaults(value) for key, value in schema.items() if key != "default"}
    if isinstance(schema, list):
        return [_without_defaults(value) for value in schema]
    return schema


def _narrow_to_catalogue(document: dict[str, Any], hooks_by_service: Mapping[str, Sequence[str]]) -> None:
    """Only the catalogue's service ids and hooks get past 404 and 400: say so in the document."""
    service_ids = sorted(hooks_by_service)
    hooks = sorted({hook for service_hooks in hooks_by_service.values() for hook in service_hooks})
    for path in (CALL_PATH, FEEDBACK_PATH):
        for parameter in document["paths"][path]["post"].get("parameters", []):
            if parameter["name"] == "service_id" and parameter["in"] == "path":
                parameter["schema"] = {**parameter["schema"], "enum": service_ids}
    hook_schema = document["components"]["schemas"]["HookRequest"]["properties"]["hook"]
    hook_schema["enum"] = hooks
    hook_schema["description"] = "The hook that fired; every service's hooks are listed in discovery."


def _complete_feedback_example(document: dict[str, Any], override_reason_system: str) -> None:
    """The feedback example's reason in the catalogue's system, so copying it does what it says."""
    examples = document["paths"][FEEDBACK_PATH]["post"]["requestBody"]["content"]["application/json"]["examples"]
    example = examples["overridden-patient-declined"]
    example["value"] = value = copy.deepcopy(example["value"])  # not the module's dict, which every app shares
    value["feedback"][0]["overrideReason"]["reason"]["system"] = override_reason_system
    example["description"] = (
        "Silences the card's rule for this patient for the rule's suppress_days (GET /rules), counted from "
        "outcomeTimestamp: send the time the clinician acted. `card` is the uuid of a card this service issued."
    )


_CLIENT_JWT_SCHEME = "cdsClientJwt"


def _require_client_jwt(document: dict[str, Any]) -> None:
    """Declare the CDS Hooks client JWT on every operation under /cds-services (interface.md decision 1).

    Declared whatever CDS_AUTH is: the document describes the service as deployed (``make openapi``
    builds it with auth off), and only a development server runs with authentication off.
    """
    document.setdefault("components", {})["securitySchemes"] = {
        _CLIENT_JWT_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "A CDS Hooks 2.0 client JWT signed by a trusted client's key (CDS_TRUSTED_CLIENTS_FILE; "
                "ES384, RS384, ES256 or RS256, kid naming the key) with iss, aud (the URL called), exp, iat "
                "and a jti used once. A development server run with CDS_AUTH=off asks for none."
            ),
        }
    }
    for path, operations in document["paths"].items():
        if is_cds_path(path):
            for method, operation in operations.items():
                if method != "options":  # CORS preflight needs no JWT (decision 12)
                    operation["security"] = [{_CLIENT_JWT_SCHEME: []}]


def _describe_prefetch(document: dict[str, Any], prefetch_by_service: Mapping[str, Mapping[str, str]]) -> None:
    """Name the prefetch keys the services declare (interface.md decision 4: each is required).

    A key left out is fetched from an allowlisted ``fhirServer``, or the call is answered 412.
    """
    templates: dict[str, dict[str, list[str]]] = {}
    for service_id in sorted(prefetch_by_service):
        for key, template in prefetch_by_service[service_id].items():
            templates.setdefault(key, {}).setdefault(template, []).append(service_id)
    prefetch = document["components"]["schemas"]["HookRequest"]["properties"]["prefetch"]
    # Every key holds a FHIR resource (an object with resourceType) or null; anything else is a 400.
    resource = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}}
    for choice in prefetch["anyOf"]:
        if choice.get("type") == "object":
            choice["properties"] = {
                key: {
                    "anyOf": [resource, {"type": "null"}],
                    "description": "; ".join(f"{template} ({', '.join(ids)})" for template, ids in by_template.items()),
                }
                for key, by_template in sorted(templates.items())
            }
            choice["additionalProperties"] = {"anyOf": [resource, {"type": "null"}]}
            choice["required"] = sorted(templates)
    prefetch["description"] = (
        "The data the service's prefetch templates ask for (see discovery): a FHIR resource, a searchset Bundle, "
        "or null for no data. A key left out is fetched from fhirServer when it is in CDS_FHIR_SERVER_ALLOWLIST "
        "and fhirAuthorization is given; otherwise the call is answered 412."
    )
