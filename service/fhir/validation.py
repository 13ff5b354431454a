"""Validation of the resources a fact rests on, with ``fhir.resources.R4B``, once each.

A relevant resource that is not valid FHIR R4 is skipped, with the reason kept for the audit
record (architecture.md: "skipped and reported, not a 500"). Only pydantic's
``ValidationError`` is caught: anything else is a bug and must surface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from hashlib import blake2b
from itertools import islice
from typing import Any, get_args

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from service.fhir.dates import with_timezones

__all__ = ["ResourceValidator", "ValidationMemo", "WorkerThreadMemo", "describe", "load_models"]

_MAX_REASONS = 3
_UNSEEN: Any = object()  # a memo lookup's default: None is an outcome (valid)


@lru_cache(maxsize=16)
def _model(resource_type: str) -> type[BaseModel]:
    return get_fhir_model_class(resource_type)  # type: ignore[no-any-return]


# A FHIR id has at most 64 characters; a longer one (or type name) is cut, so what a client sends
# cannot make a skip line, kept in the validation memo and the audit record, megabytes long.
_MAX_NAME = 64
_MAX_SKIP_LINE = 500


def describe(resource: dict[str, Any]) -> str:
    """``Condition/abc`` for messages. A Patient is named by type only: its id is a patient id."""
    resource_type = resource.get("resourceType")
    name = _cut(resource_type, _MAX_NAME) if isinstance(resource_type, str) else "resource"
    resource_id = resource.get("id")
    if name != "Patient" and isinstance(resource_id, str):
        return f"{name}/{_cut(resource_id, _MAX_NAME)}"
    return name


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _RememberedOutcomes:
    """Validation outcomes looked up by a digest of what validation sees; what a miss learns, and
    where it goes, is the subclass's (``_learn``)."""

    def __init__(self, size: int, outcomes: dict[bytes, str | None]) -> None:
        self._size = size
        self._outcomes = outcomes  # digest -> why invalid, or None when valid
        self.hits = 0
        self.misses = 0

    def why_invalid(self, resource: dict[str, Any]) -> str | None:
        """As ``_why_invalid``, remembered by the part of the resource validation sees (the outcome
        depends on nothing else)."""
        seen = _used_part(resource)
        digest = self._digest(seen)
        if digest is None:
            return _why_part_invalid(seen)
        outcome = self._outcomes.get(digest, _UNSEEN)  # one lookup: atomic under the GIL, from any thread
        if outcome is not _UNSEEN:
            self.hits += 1
            return outcome
        return self._learn(digest, seen)

    def _learn(self, digest: bytes, seen: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def _digest(self, resource: dict[str, Any]) -> bytes | None:
        """None (not remembered) when the memo is off or the resource is not plain JSON."""
        if self._size == 0:
            return None
        try:
            return blake2b(orjson.dumps(resource), digest_size=16).digest()
        except orjson.JSONEncodeError:  # a Decimal or a non-string key: read from a file, not HTTP
            return None


class ValidationMemo(_RememberedOutcomes):
    """What validation concluded about a resource, by the resource's content, across calls.

    Validation is a pure function of a resource's JSON, and the same resources arrive again and
    again: an EHR calls every service of a hook with the same prefetch (three services share
    patient-view here), opens the same chart many times a day, and fires order-select on each
    selection. R4B costs 0.1-0.2 ms per Condition or Observation; a lookup costs a few
    microseconds. Keys are 16-byte BLAKE2b digests of the JSON that validation sees (``_used_part``:
    a Synthea Patient's 95 bytes, not its 3.4 KB), so no patient data is kept beyond a skipped
    resource's "Condition/<id>: why" line; when full, the oldest go first.

    Only the event loop's thread changes it, so it needs no lock (a lock per lookup cost 0.7 % of
    a typical call). A call computed in a worker thread reads it through ``for_worker_thread()``,
    and what that call learnt is added afterwards, back on the loop's thread (``remember``).
    """

    def __init__(self, size: int) -> None:
        super().__init__(size, {})

    def __len__(self) -> int:
        return len(self._outcomes)

    def for_worker_thread(self) -> WorkerThreadMemo:
        """This memo as one call computed in a worker thread may use it."""
        return WorkerThreadMemo(self._size, self._outcomes)

    def remember(self, learnt: WorkerThreadMemo) -> None:
        """Add what a call computed in a worker thread learnt (the last ``size`` of it at most), and
        count its lookups.

        The oldest entries make room in one pass: evicting them one by one, each found by iterating
        past the ones deleted before it, took 0.7 s on the loop for 50,000 outcomes.
        """
        self.hits += learnt.hits
        self.misses += learnt.misses
        new = [(digest, outcome) for digest, outcome in learnt.outcomes.items() if digest not in self._outcomes]
        new = new[len(new) - self._size :] if len(new) > self._size else new
        overflow = len(self._outcomes) + len(new) - self._size
        if overflow > 0:
            for digest in list(islice(self._outcomes, overflow)):
                del self._outcomes[digest]
        self._outcomes.update(new)

    def _learn(self, digest: bytes, seen: dict[str, Any]) -> str | None:
        self.misses += 1
        outcome = _why_part_invalid(seen)
        if len(self._outcomes) >= self._size:
            del self._outcomes[next(iter(self._outcomes))]  # dicts keep insertion order: the oldest
        self._outcomes[digest] = outcome
        return outcome


class WorkerThreadMemo(_RememberedOutcomes):
    """A ``ValidationMemo`` as seen by one call in a worker thread: it looks outcomes up in the
    memo's own dict, whatever the loop's thread adds or evicts meanwhile, and keeps what it learns
    to itself (``outcomes``), for ``ValidationMemo.remember``."""

    def __init__(self, size: int, known: dict[bytes, str | None]) -> None:
        super().__init__(size, known)  # only read here
        self.outcomes: dict[bytes, str | None] = {}  # learnt by this call

    def _learn(self, digest: bytes, seen: dict[str, Any]) -> str | None:
        outcome = self.outcomes.get(digest, _UNSEEN)
        if outcome is not _UNSEEN:
            self.hits += 1
            return outcome
        self.misses += 1
        outcome = self.outcomes[digest] = _why_part_invalid(seen)
        return outcome


class ResourceValidator:
    """Validates each resource at most once and collects why the invalid ones were skipped."""

    def __init__(self, memo: ValidationMemo | WorkerThreadMemo | None = None) -> None:
        self._why_invalid = memo.why_invalid if memo is not None else _why_invalid
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
        invalid_because = self._why_invalid(resource)
        self._results[key] = invalid_because is None
        if invalid_because is not None:
            self._skipped.append(invalid_because)
        return invalid_because is None

    def skip(self, resource: dict[str, Any], reason: str) -> None:
        """Record a relevant resource that is valid FHIR but cannot be used (an unknown unit ...)."""
        self._skipped.append(_cut(f"{describe(resource)}: {reason}", _MAX_SKIP_LINE))  # the reason may quote client text (a unit)


def _why_invalid(resource: dict[str, Any]) -> str | None:
    """None when ``resource`` is valid FHIR R4 as the facts read it; else the skip line."""
    return _why_part_invalid(_used_part(resource))


def _why_part_invalid(part: dict[str, Any]) -> str | None:
    """``_why_invalid`` of a resource whose ``_used_part`` is ``part``: the outcome depends on
    nothing else (the skip line names the type and id, both in it)."""
    try:
        _model(part["resourceType"]).model_validate(_lenient(part))
    except ValidationError as exc:
        return _cut(f"{describe(part)}: not valid FHIR R4: {_reasons(exc)}", _MAX_SKIP_LINE)
    except (AttributeError, TypeError) as exc:
        # fhir.resources 8.3 crashes instead of failing validation on a primitive extension
        # that is JSON but not an object ("_birthDate": "0"); the resource is invalid all the same.
        return _cut(f"{describe(part)}: not valid FHIR R4: {type(exc).__name__}: {exc}", _MAX_SKIP_LINE)
    return None


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


def _validated(name: str, used: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    """Whether validation sees the element ``name`` of a type whose ``_USED_ELEMENTS`` entry is ``used``."""
    names, stems = used
    return name in names or name in _ALWAYS_VALIDATED or any(
        name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper() for stem in stems
    )


# Per resource type, whether validation sees a key, as ``_validated`` decides (5-8 us a resource),
# remembered (about 1 us): the same few dozen keys come again and again. Bounded, so a request
# full of made-up keys cannot grow it without limit.
_SEEN_BY_TYPE: dict[str, dict[str, bool]] = {resource_type: {} for resource_type in _USED_ELEMENTS}
_SEEN_LIMIT = 512


def _used_part(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of ``resource`` the facts read (with their ``_element`` extension siblings)."""
    resource_type = resource.get("resourceType")
    used = _USED_ELEMENTS.get(resource_type)  # type: ignore[arg-type]
    if used is None:
        return resource
    seen = _SEEN_BY_TYPE[resource_type]  # type: ignore[index]
    part = {}
    for key, value in resource.items():
        kept = seen.get(key)
        if kept is None:
            kept = _validated(key.removeprefix("_"), used)
            if len(seen) >= _SEEN_LIMIT:
                seen.clear()
            seen[key] = kept
        if kept:
            part[key] = value
    return part


def load_models() -> int:
    """Load every R4B class that validating a relevant resource can reach; how many there are.

    ``fhir.resources`` imports the module of a nested datatype (and builds its validators) the
    first time a field of that type is validated: the first typical hook call after start spent
    34 ms of its 35 importing 11 of them (190 ms on a slower machine), against 1 ms for the next.
    The service calls this at start instead. Walked from the elements validation sees
    (``_USED_ELEMENTS``) through every nested datatype, but not into Extension: its value[x]
    reaches every datatype of R4, and an extension that uses one is rare enough to pay for it.
    """
    loaded: set[type[BaseModel]] = set()
    for resource_type, used in _USED_ELEMENTS.items():
        model = _model(resource_type)
        loaded.add(model)
        _load_field_models(model, loaded, partial(_validated, used=used))
    return len(loaded)


def _load_field_models(
    model: type[BaseModel], loaded: set[type[BaseModel]], validated: Callable[[str], bool] | None = None
) -> None:
    """The classes of ``model``'s fields (those ``validated`` accepts, or all), and theirs, into ``loaded``."""
    for name, field in model.model_fields.items():
        if validated is not None and not validated(name):
            continue
        for nested in _field_models(field.annotation):
            if nested not in loaded:
                loaded.add(nested)
                if nested.__name__ != "Extension":
                    _load_field_models(nested, loaded)


def _field_models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The R4B classes an annotation names (``ReferenceType | None``, ``list[CodingType]`` ...)."""
    pending = [annotation]
    while pending:
        kind = pending.pop()
        model_class = getattr(kind, "get_model_klass", None)  # fhir_core's FHIR types: imports the class
        if model_class is not None:
            yield model_class()
        pending.extend(get_args(kind))


def _lenient(part: dict[str, Any]) -> dict[str, Any]:
    """What R4 validation sees of a resource's used elements (``_used_part``): them, with the
    tolerated deviations made valid.

    - dateTimes without an offset get ``Z`` (read as UTC by the facts too);
    - ``Condition.abatementBoolean`` (STU3; clinical-rules.md lists ``true`` among the
      abatement forms) is left out of validation; the facts read it as an abatement.
    """
    fixed: dict[str, Any] = with_timezones(part)
    if part.get("resourceType") == "Condition" and "abatementBoolean" in fixed:
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
