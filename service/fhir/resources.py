"""From what a prefetch or a file holds to the resources about one patient that some fact reads.

Input is any mix of single resources and Bundles of any type (searchset, transaction,
collection, nested). Selection is cheap dict access on the raw JSON: resource type, subject
and code. Nothing is validated here; the caller validates only what it selected, so a
10,000-resource prefetch costs a walk, not 10,000 validations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.fhir.codes import CodeMatcher

__all__ = ["Selection", "flatten", "select_resources"]

_Resource = dict[str, Any]


@dataclass(slots=True)  # built per call: not frozen (see Evidence)
class Selection:
    """The resources about the patient that a fact may read, not yet validated."""

    patient_id: str | None  # the patient asked about, or the one Patient found in the data
    patient: _Resource | None
    conditions: tuple[_Resource, ...]
    observations: tuple[tuple[str, _Resource], ...]  # (observation definition name, resource)
    family_histories: tuple[_Resource, ...]


def flatten(data: Iterable[object] | Mapping[str, Any]) -> tuple[list[_Resource], dict[str, _Resource]]:
    """Every resource in ``data`` (Bundles unpacked, nested ones too) and the Bundle fullUrls.

    A resource seen twice (same type and id, e.g. in two prefetch keys) is kept once, the first
    time. Anything that is not a JSON object with a ``resourceType`` is passed over.
    """
    items: list[object] = [data] if isinstance(data, Mapping) else list(data)
    stack = items[::-1]
    resources: list[_Resource] = []
    full_urls: dict[str, _Resource] = {}
    seen: set[tuple[str, str]] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        resource_type = item.get("resourceType")
        if resource_type == "Bundle":
            entries = item.get("entry")
            if isinstance(entries, list):
                for entry in reversed(entries):
                    resource = entry.get("resource") if isinstance(entry, dict) else None
                    if not isinstance(resource, dict):
                        continue
                    full_url = entry.get("fullUrl")
                    if isinstance(full_url, str):
                        full_urls.setdefault(full_url, resource)
                    stack.append(resource)
            continue
        if not isinstance(resource_type, str):
            continue
        resource_id = item.get("id")
        if isinstance(resource_id, str):
            key = (resource_type, resource_id)
            if key in seen:
                continue
            seen.add(key)
        resources.append(item)
    return resources, full_urls


def _reference_target(reference: str, full_urls: Mapping[str, _Resource]) -> tuple[str | None, str | None]:
    """(resource type, id) a reference points at; None where it cannot be told."""
    resolved = full_urls.get(reference)
    if resolved is not None:
        resource_type, resource_id = resolved.get("resourceType"), resolved.get("id")
        return (
            resource_type if isinstance(resource_type, str) else None,
            resource_id if isinstance(resource_id, str) else None,
        )
    if reference.startswith("urn:uuid:"):
        # Not in any Bundle given: Synthea uses the patient id as the uuid.
        return None, reference[len("urn:uuid:") :]
    if reference.startswith("#"):
        return None, None  # contained resource
    parts = reference.split("?", 1)[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] and parts[-1]:
        return parts[-2], parts[-1]
    return None, None


class _AboutPatient:
    """Whether a resource is about the patient, each distinct reference resolved once per call.

    A chart's resources all point at the same patient: resolving the reference again for each
    cost 0.46 us a resource; a dict probe costs a tenth of that.
    """

    def __init__(self, patient_id: str | None, full_urls: Mapping[str, _Resource]) -> None:
        self._patient_id = patient_id
        self._full_urls = full_urls
        self._verdicts: dict[str, bool] = {}  # reference -> about the patient

    def about(self, resource: _Resource, field: str) -> bool:
        """False only when ``resource.<field>`` clearly points at someone other than the patient."""
        if self._patient_id is None:
            return True
        subject = resource.get(field)
        if not isinstance(subject, dict):
            return True  # no reference: nothing says it is about someone else
        reference = subject.get("reference")
        if not isinstance(reference, str):
            return True  # identifier or display only
        verdict = self._verdicts.get(reference)
        if verdict is None:
            verdict = self._verdicts[reference] = self._points_at_patient(reference)
        return verdict

    def _points_at_patient(self, reference: str) -> bool:
        resource_type, resource_id = _reference_target(reference.strip(), self._full_urls)
        if resource_type is not None and resource_type != "Patient":
            return False  # a Group, a Location, ...: not this patient
        return resource_id is None or resource_id == self._patient_id


def _member_codes(resource: _Resource) -> Iterable[object]:
    conditions = resource.get("condition")
    if isinstance(conditions, list):
        for condition in conditions:
            if isinstance(condition, dict):
                yield condition.get("code")


def select_resources(
    data: Iterable[object] | Mapping[str, Any],
    *,
    patient_id: str | None,
    matcher: CodeMatcher,
    condition_concepts: frozenset[str],
    member_concepts: frozenset[str],
    observation_concepts: Mapping[str, str],
) -> Selection:
    """Pick the patient and their Conditions, Observations and FamilyMemberHistories that matter.

    ``condition_concepts``: a Condition matters when coded with one of them;
    ``member_concepts``: a FamilyMemberHistory matters when one of its conditions is;
    ``observation_concepts``: concept -> observation definition name.
    Without ``patient_id`` the first Patient in the data is the patient.
    """
    resources, full_urls = flatten(data)
    patient: _Resource | None = None
    for resource in resources:
        if resource.get("resourceType") == "Patient":
            resource_id = resource.get("id")
            if patient_id is None or resource_id == patient_id:
                patient = resource
                if patient_id is None and isinstance(resource_id, str):
                    patient_id = resource_id
                break
    about = _AboutPatient(patient_id, full_urls).about  # a bound method: calling an instance costs more
    concepts_in = matcher.concepts_in
    conditions: list[_Resource] = []
    observations: list[tuple[str, _Resource]] = []
    family_histories: list[_Resource] = []
    for resource in resources:
        resource_type = resource.get("resourceType")
        if resource_type == "Observation":  # the most numerous first
            concepts = concepts_in(resource.get("code"))
            name = _observation_name(concepts, observation_concepts) if concepts else None
            if name is not None and about(resource, "subject"):
                observations.append((name, resource))
        elif resource_type == "Condition":
            if not condition_concepts.isdisjoint(concepts_in(resource.get("code"))) and about(resource, "subject"):
                conditions.append(resource)
        elif resource_type == "FamilyMemberHistory":
            if any(not member_concepts.isdisjoint(concepts_in(code)) for code in _member_codes(resource)) and about(
                resource, "patient"
            ):
                family_histories.append(resource)
    return Selection(
        patient_id=patient_id,
        patient=patient,
        conditions=tuple(conditions),
        observations=tuple(observations),
        family_histories=tuple(family_histories),
    )


def _observation_name(concepts: frozenset[str], observation_concepts: Mapping[str, str]) -> str | None:
    if len(concepts) == 1:  # the usual case: one probe, not a walk of the definitions
        (concept,) = concepts
        return observation_concepts.get(concept)
    for concept, name in observation_concepts.items():  # definition order: deterministic
        if concept in concepts:
            return name
    return None
