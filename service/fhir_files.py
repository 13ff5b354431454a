"""FHIR data from files, for ``back-knee-cds evaluate``: Bundles, resources, NDJSON, CDS Hooks requests.

The CLI evaluates what an EHR would send, without a server: so a CDS Hooks request file is
read the way the service reads it (its prefetch values, ``context.patientId``). A file that is
none of these is refused with a message naming the file (and the line, for NDJSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from service.cdshooks.errors import describe_validation_errors
from service.cdshooks.models import HookRequest
from service.engine.catalogue import ServiceDefinition

__all__ = ["FhirFileError", "InputData", "patient_ids", "read_inputs"]


class FhirFileError(ValueError):
    """A file cannot be used; the message starts with the file name."""


@dataclass(slots=True)
class InputData:
    """Everything read from the files: resources/Bundles, and patient ids named by hook requests."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    context_patients: list[str] = field(default_factory=list)
    requests: list[_Request] = field(default_factory=list)  # one per CDS Hooks request file

    def refusal(self, service: ServiceDefinition, patient_id: str | None) -> str | None:
        """Why ``service`` would not evaluate a request file about ``patient_id``, or None: a hook
        it does not serve (400), or prefetch it would have to fetch (412: no FHIR server is called offline)."""
        for request in self.requests:
            if request.patient != patient_id:
                continue
            refused = service.refuses_hook(request.hook)
            if refused is not None:
                return f"{request.path}: {refused} (the service would answer 400)"
            for key in service.prefetch:
                if key not in request.usable:
                    return (
                        f"{request.path}: prefetch key '{key}' is missing or holds an OperationOutcome; the service would "
                        "answer 412 (offline, nothing is fetched from a FHIR server)"
                    )
        return None


@dataclass(frozen=True, slots=True)
class _Request:
    path: Path
    patient: str
    hook: str
    # The prefetch keys it gives the service something to use under (a resource, or null for "no
    # data"); a missing key or an OperationOutcome is not.
    usable: frozenset[str]


def read_inputs(paths: Iterable[str]) -> InputData:
    data = InputData()
    for name in paths:
        _read_one(Path(name), data)
    return data


def _read_one(path: Path, data: InputData) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FhirFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FhirFileError(f"{path}: is a directory, expected a JSON or NDJSON file") from None
    except OSError as exc:
        raise FhirFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise FhirFileError(f"{path}: file is empty; expected FHIR JSON, NDJSON or a CDS Hooks request")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as whole_error:
        lines = [line for line in raw.splitlines() if line.strip()]
        if len(lines) < 2:
            raise FhirFileError(f"{path}: not valid JSON: {whole_error}") from None
        for number, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                data.resources.append(_ndjson_resource(path, number, line))
        return
    _add_document(path, document, data)


def _ndjson_resource(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise FhirFileError(f"{path}: line {number}: not valid JSON (NDJSON needs one resource per line): {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise FhirFileError(f"{path}: line {number}: not a FHIR resource (no resourceType)")
    return value


def _add_document(path: Path, document: Any, data: InputData) -> None:
    if not isinstance(document, dict):
        raise FhirFileError(f"{path}: expected a JSON object (a FHIR resource, Bundle or CDS Hooks request), got {type(document).__name__}")
    if isinstance(document.get("resourceType"), str):
        data.resources.append(document)
        return
    if "hook" in document and "context" in document:
        # Checked as the service checks a call's body: what it answers 400 is an error here too.
        try:
            request = HookRequest.model_validate(document)
        except ValidationError as exc:
            raise FhirFileError(f"{path}: {describe_validation_errors(exc.errors())} (the service would answer 400)") from None
        patient = request.patient_id
        data.context_patients.append(patient)
        prefetch = request.prefetch or {}
        # An OperationOutcome in place of data is a key the service would have to fetch (412).
        usable = {key: value for key, value in prefetch.items() if value is None or value["resourceType"] != "OperationOutcome"}
        data.resources.extend(value for value in usable.values() if value is not None)
        data.requests.append(_Request(path, patient, request.hook, frozenset(usable)))
        return
    raise FhirFileError(f"{path}: not a FHIR resource (no resourceType) and not a CDS Hooks request (no hook/context)")


def patient_ids(data: InputData) -> list[str]:
    """The patients to evaluate: those named by hook requests, else every Patient resource found,
    else every ``Patient/<id>`` a resource's subject or patient refers to (single-resource files)."""
    if data.context_patients:
        return list(dict.fromkeys(data.context_patients))
    return list(dict.fromkeys(_patients(data.resources))) or list(dict.fromkeys(_referenced_patients(data.resources)))


def _referenced_patients(resources: Iterable[Any]) -> Iterator[str]:
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        for key in ("subject", "patient"):
            reference = resource.get(key)
            if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
                kind, _, ident = reference["reference"].partition("/")
                if kind == "Patient" and ident and "/" not in ident:
                    yield ident


def _patients(resources: Iterable[Any]) -> Iterator[str]:
    """Patient ids in resources and (nested) Bundles, iteratively: no recursion limit to hit."""
    stack = list(resources)[::-1]
    while stack:
        resource = stack.pop()
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
            yield resource["id"]
        elif resource.get("resourceType") == "Bundle" and isinstance(resource.get("entry"), list):
            stack.extend(entry.get("resource") for entry in reversed(resource["entry"]) if isinstance(entry, dict))
