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
        self._results[key] = True
        return True

    def skip(self, resource: dict[str, Any], reason: str) -> None:
        """Record a relevant resource that is valid FHIR but cannot be used (an unknown unit ...)."""
        self._skipped.append(f"{describe(resource)}: {reason}")


def _lenient(resource: dict[str, Any]) -> dict[str, Any]:
    """What R4 validation sees: the resource with the tolerated deviations made valid.

    - dateTimes without an offset get ``Z`` (read as UTC by the facts too);
    - ``Condition.abatementBoolean`` (STU3; clinical-rules.md lists ``true`` among the
      abatement forms) is left out of validation; the facts read it as an abatement.
    """
    fixed: dict[str, Any] = with_timezones(resource)
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
