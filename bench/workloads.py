"""Benchmark request bodies, built from the shared FHIR fixtures (real resources, never hand-written).

Every workload is a ``patient-view`` call to ``back-knee-risk-factors`` (the service that declares
all four prefetch keys) with every key filled, so no FHIR server is contacted:

- ``typical``: what a conformant EHR sends for one patient: the Patient, their Conditions, the
  weight/height/BMI Observations the code-filtered template asks for, and two FamilyMemberHistory.
  Synthea has no FamilyMemberHistory, so the two are built from the structure of the HL7 R4
  ``familymemberhistory-example.json`` with condition codes from clinical-rules.md (knee
  osteoarthritis for the father, low back pain for the mother).
- ``heavy``: the largest Synthea patient sent unfiltered: every Condition and every Observation
  (vital signs, labs, surveys), as a client that ignores the code filter would send them.
- ``sweep-N``: N resources in the search Bundles, sampled evenly from the heavy patient's
  Conditions and Observations, then replicated with new ids once the real ones run out.

Bodies are deterministic (ids and hookInstance derive from fixed names), so runs compare.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shared_dir import locate_shared_dir

__all__ = [
    "BODY_WEIGHT_HEIGHT_BMI_CODES",
    "DEFAULT_FIXTURES",
    "HEAVY_PATIENT",
    "SERVICE_ID",
    "TYPICAL_PATIENT",
    "Workload",
    "build_workloads",
    "family_history",
    "heavy",
    "sweep",
    "typical",
]

SERVICE_ID = "back-knee-risk-factors"

# The shared FHIR fixtures, found as the tests find them.
DEFAULT_FIXTURES = locate_shared_dir() / "fixtures" / "fhir"

# The codes of the service's Observation prefetch template (rules/services.yaml, clinical-codes.md §7).
BODY_WEIGHT_HEIGHT_BMI_CODES = frozenset(
    {"39156-5", "29463-7", "3141-9", "3142-7", "8350-1", "8351-9", "8302-2", "3137-7", "8306-3", "8308-9"}
)

# 7 Conditions (an ACL injury among them) and 27 weight/height/BMI Observations: the fixture
# patient closest to "~10 Conditions, ~30 Observations" who is alive.
TYPICAL_PATIENT = "synthea-r4-bundles/Burton_Kozey_0c7764a9-ede1-44de-9c32-8d41151a713e.json"
# The fixture patient with the most Conditions + Observations (11 + 328).
HEAVY_PATIENT = "synthea-r4-bundles/Neva_Hyatt_e6a7ccbf-70a6-45c8-905a-5f55a98c3a4f.json"
FAMILY_HISTORY_EXAMPLE = "hl7-r4-examples/familymemberhistory-example.json"

_NAMESPACE = uuid.UUID("5d6f3f0e-7a43-4b8e-9a3e-6a1f0b6c2d10")  # fixed, so bodies are reproducible
_SNOMED = "http://snomed.info/sct"
# (relative, relationship code, display, sex, SNOMED condition code and display): codes from clinical-rules.md §1b.
_RELATIVES = (
    ("father", "FTH", "father", "male", "239873007", "Osteoarthritis of knee"),
    ("mother", "MTH", "mother", "female", "279039007", "Low back pain"),
)


@dataclass(frozen=True, slots=True)
class Workload:
    """One request body and what it holds."""

    name: str
    body: bytes
    resources: int  # resources in the prefetch search Bundles (the Patient not counted)
    description: str


def typical(fixtures: Path) -> Workload:
    resources = _bundle_resources(fixtures / TYPICAL_PATIENT)
    patient = _only(resources, "Patient")
    conditions = _of_type(resources, "Condition")
    observations = [r for r in _of_type(resources, "Observation") if _has_loinc(r, BODY_WEIGHT_HEIGHT_BMI_CODES)]
    families = family_history(fixtures, patient_id=patient["id"])
    body = _hook_request("typical", patient, conditions=conditions, observations=observations, family=families)
    count = len(conditions) + len(observations) + len(families)
    return Workload(
        "typical",
        body,
        count,
        f"{Path(TYPICAL_PATIENT).stem.split('_')[0]}: Patient, {len(conditions)} Conditions, "
        f"{len(observations)} weight/height/BMI Observations, {len(families)} FamilyMemberHistory",
    )


def heavy(fixtures: Path) -> Workload:
    resources = _bundle_resources(fixtures / HEAVY_PATIENT)
    patient = _only(resources, "Patient")
    conditions = _of_type(resources, "Condition")
    observations = _of_type(resources, "Observation")
    body = _hook_request("heavy", patient, conditions=conditions, observations=observations, family=[])
    return Workload(
        "heavy",
        body,
        len(conditions) + len(observations),
        f"{Path(HEAVY_PATIENT).stem.split('_')[0]}: Patient, all {len(conditions)} Conditions and all "
        f"{len(observations)} Observations (unfiltered)",
    )


def sweep(fixtures: Path, size: int) -> Workload:
    """``size`` Conditions + Observations in the prefetch, in the heavy patient's proportions."""
    if size < 1:
        raise ValueError(f"sweep size must be at least 1, got {size}")
    resources = _bundle_resources(fixtures / HEAVY_PATIENT)
    patient = _only(resources, "Patient")
    pool = _of_type(resources, "Condition") + _of_type(resources, "Observation")
    chosen: list[dict[str, Any]] = []
    for index in range(size):
        if size <= len(pool):
            chosen.append(pool[index * len(pool) // size])  # an even sample of the real record
            continue
        source = pool[index % len(pool)]
        copy_number = index // len(pool)
        if copy_number == 0:
            chosen.append(source)
            continue
        replica = copy.deepcopy(source)
        replica["id"] = str(uuid.uuid5(_NAMESPACE, f"{source['id']}/{copy_number}"))
        chosen.append(replica)
    conditions = [r for r in chosen if r["resourceType"] == "Condition"]
    observations = [r for r in chosen if r["resourceType"] == "Observation"]
    body = _hook_request(f"sweep-{size}", patient, conditions=conditions, observations=observations, family=[])
    return Workload(
        f"sweep-{size}",
        body,
        size,
        f"{len(conditions)} Conditions + {len(observations)} Observations (heavy patient, replicated with new ids)",
    )


def family_history(fixtures: Path, *, patient_id: str) -> list[dict[str, Any]]:
    """Two FamilyMemberHistory shaped like the HL7 example, with back/knee condition codes."""
    example = orjson.loads((fixtures / FAMILY_HISTORY_EXAMPLE).read_bytes())
    histories = []
    for relative, role, role_display, sex, code, display in _RELATIVES:
        history = copy.deepcopy(example)
        history["id"] = f"bench-{relative}"
        history.pop("identifier", None)
        history["patient"] = {"reference": f"Patient/{patient_id}"}  # the example's display is a name
        history["relationship"]["coding"][0].update(code=role, display=role_display)
        history["sex"]["coding"][0].update(code=sex, display=sex.capitalize())
        condition = history["condition"][0]
        condition["code"] = {"coding": [{"system": _SNOMED, "code": code, "display": display}], "text": display}
        condition.pop("contributedToDeath", None)
        condition.pop("note", None)
        histories.append(history)
    return histories


def build_workloads(fixtures: Path, *, names: Iterable[str], sweep_sizes: Sequence[int]) -> list[Workload]:
    """The named workloads in order; ``sweep`` expands to one workload per size."""
    built: list[Workload] = []
    for name in names:
        if name == "typical":
            built.append(typical(fixtures))
        elif name == "heavy":
            built.append(heavy(fixtures))
        elif name == "sweep":
            built.extend(sweep(fixtures, size) for size in sweep_sizes)
        else:
            raise ValueError(f"unknown workload '{name}'; choose from typical, heavy, sweep")
    return built


def _bundle_resources(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: fixture not found; the shared FHIR fixtures belong in ../shared/fixtures/fhir (or set BACK_KNEE_SHARED_DIR)")
    bundle = orjson.loads(path.read_bytes())
    return [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]


def _of_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources if r.get("resourceType") == resource_type]


def _only(resources: list[dict[str, Any]], resource_type: str) -> dict[str, Any]:
    (found,) = _of_type(resources, resource_type)
    return found


def _has_loinc(resource: dict[str, Any], codes: frozenset[str]) -> bool:
    return any(
        coding.get("system") == "http://loinc.org" and coding.get("code") in codes
        for coding in resource.get("code", {}).get("coding", [])
    )


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }


def _hook_request(
    name: str,
    patient: dict[str, Any],
    *,
    conditions: list[dict[str, Any]],
    observations: list[dict[str, Any]],
    family: list[dict[str, Any]],
) -> bytes:
    request = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(_NAMESPACE, f"hookInstance/{name}")),
        "context": {"userId": "Practitioner/bench", "patientId": patient["id"]},
        "prefetch": {
            "patient": patient,
            "conditions": _searchset(conditions),
            "observations": _searchset(observations),
            "familyHistory": _searchset(family),
        },
    }
    return orjson.dumps(request)
