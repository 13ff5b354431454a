"""Validation of the resources a fact rests on, with ``fhir.resources.R4B``, once each.

A relevant resource that is not valid FHIR R4 is skipped, with the reason kept for the audit
record (architecture.md: "skipped and reported, not a 500"). Only pydantic's
``ValidationError`` is caught: anything else is a bug and must surface.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from service.fhir.dates import with_timezones

__all__ = ["ResourceValidator", "describe"]

_MAX_REASONS = 3


@lru_cache(maxsize=16)
def _model(resource_type: str) -> type[BaseModel]:
    return get_fhir_model_class(resource_type)  # type: ignore[no-any-return]


def describe(resource: dict[str, Any]) -> str:
    """``Condition/abc`` for messages. A Patient is named by type only: its id is a patient id."""
    resource_type = resource.get("resourceType")
    name = resource_type if isinstance(resource_type, str) else "resource"
    resource_id = resource.get("id")
    if name != "Patient" and isinstance(resource_id, str):
        return f"{name}/{resource_id}"
    return name


class ResourceValidator:
    """Validates each resource at most once and collects why the invalid ones were skipped."""

    def __init__(self) -> None:
        self._results: dict[int, bool] = {}
        self._keep: list[dict[str, Any]] = []  # keeps ids in _results meaning the same object
        self._skipped: list[str] = []

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(self._skipped)

    def valid(self, resource: dict[str, Any]) -> bool:
        """Whether ``resource`` is valid FHIR R4 (timezone-less datetimes tolerated)."""
        key = id(resource)
        known = self._results.get(key)
        if known is not None:
            return known
        self._keep.append(resource)
        try:
            _model(resource["resourceType"]).model_validate(_lenient(resource))
        except ValidationError as exc:
            self._results[key] = False
            self._skipped.append(f"{describe(resource)}: not valid FHIR R4: {_reasons(exc)}")
            return False
        except (AttributeError, TypeError) as exc:
            # fhir.resources 8.3 crashes instead of failing validation on a primitive extension
            # that is JSON but not an object ("_birthDate": "0"); the resource is invalid all the same.
            self._results[key] = False
            self._skipped.append(f"{describe(resource)}: not valid FHIR R4: {type(exc).__name__}: {exc}")
            return False
        self._results[key] = True
        return True

    def skip(self, resource: dict[str, Any], reason: str) -> None:
        """Record a relevant resource that is valid FHIR but cannot be used (an unknown unit ...)."""
        self._skipped.append(f"{describe(resource)}: {reason}")


# "Validate what you use" (architecture.md): per resource type, the elements that the selection
# (resources.py) and the readers (records.py) read, plus those R4 requires of the type; choice
# elements ([x]) by their stem, every type (``onsetDateTime``, ``onsetBoolean`` ...). The rest of a
# resource (narrative, identifiers, addresses, extensions) is never read, so it is not validated:
# a Synthea Patient's validation went from 1.4 ms to 0.04 ms, and a broken address no longer
# makes a patient's age unknown. Update this table with any reader that reads a new element.
_USED_ELEMENTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "Patient": (frozenset({"id", "birthDate"}), ("deceased",)),
    "Condition": (
        frozenset({"id", "subject", "code", "clinicalStatus", "verificationStatus", "recordedDate"}),
        ("onset", "abatement"),
    ),
    "Observation": (frozenset({"id", "subject", "status", "code", "issued"}), ("effective", "value")),
    "FamilyMemberHistory": (frozenset({"id", "patient", "status", "relationship", "condition", "date"}), ()),
}
# Kept for every type: what a resource is, and extensions that change the meaning of the rest.
_ALWAYS_VALIDATED = frozenset({"resourceType", "modifierExtension", "implicitRules"})


def _used_part(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of ``resource`` the facts read (with their ``_element`` extension siblings)."""
    used = _USED_ELEMENTS.get(resource.get("resourceType"))  # type: ignore[arg-type]
    if used is None:
        return resource
    names, stems = used
    part = {}
    for key, value in resource.items():
        name = key[1:] if key.startswith("_") else key
        if name in names or name in _ALWAYS_VALIDATED or any(
            name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper() for stem in stems
        ):
            part[key] = value
    return part


def _lenient(resource: dict[str, Any]) -> dict[str, Any]:
    """What R4 validation sees: the used elements, with the tolerated deviations made valid.

    - only the elements the facts read (``_used_part``);
    - dateTimes without an offset get ``Z`` (read as UTC by the facts too);
    - ``Condition.abatementBoolean`` (STU3; clinical-rules.md lists ``true`` among the
      abatement forms) is left out of validation; the facts read it as an abatement.
    """
    fixed: dict[str, Any] = with_timezones(_used_part(resource))
    if resource.get("resourceType") == "Condition" and "abatementBoolean" in fixed:
        fixed = {key: value for key, value in fixed.items() if key != "abatementBoolean"}
    return fixed


def _reasons(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:_MAX_REASONS]:
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    more = len(errors) - _MAX_REASONS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
