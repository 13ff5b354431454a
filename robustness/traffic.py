"""Hook request bodies for the soak run, built from the shared Synthea patients (real data).

One body per (patient, service): the Patient, the patient's Conditions, and the weight, height
and BMI Observations the services' code-filtered template asks for; FamilyMemberHistory is
``null`` (Synthea writes none). Every prefetch key is filled, so no FHIR server is contacted.

The Synthea records end in 2018-2021; the service evaluates them on today's date, when most of
their measurements are too old to count. So each patient's dates are shifted (every ISO date
in the record moves by the same number of days, birth date included) to end 30 days ago:
the same histories, as current as a patient seen this month.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from shared_dir import locate_shared_dir

__all__ = ["PatientData", "load_patients", "hook_body", "SERVICES", "FIXTURES"]

FIXTURES = locate_shared_dir() / "fixtures" / "fhir"
SERVICES = ("back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance")
# LOINC BMI, body weight and body height codes of the Observation prefetch template (rules/services.yaml).
_VITAL_CODES = frozenset({"39156-5", "29463-7", "3141-9", "3142-7", "8350-1", "8351-9", "8302-2", "3137-7", "8306-3", "8308-9"})


@dataclass(frozen=True, slots=True)
class PatientData:
    patient: dict[str, Any]
    conditions: list[dict[str, Any]]
    observations: list[dict[str, Any]]

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])


def load_patients(fixtures: Path = FIXTURES, *, shift_to: date | None = None) -> list[PatientData]:
    """Every whole-patient Bundle among the fixtures (Synthea, both sets), dates shifted to end at ``shift_to``."""
    paths = sorted(fixtures.glob("*synthea-r4-bundles/*.json"))
    if not paths:
        raise SystemExit(f"{fixtures}: no Synthea bundles found; the shared FHIR fixtures belong in ../shared/fixtures/fhir")
    patients = []
    for path in paths:
        bundle = orjson.loads(path.read_bytes() if shift_to is None else _shifted(path.read_bytes(), shift_to))
        resources = [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]
        (patient,) = [r for r in resources if r.get("resourceType") == "Patient"]
        conditions = [r for r in resources if r.get("resourceType") == "Condition"]
        observations = [r for r in resources if r.get("resourceType") == "Observation" and _is_vital(r)]
        patients.append(PatientData(patient, conditions, observations))
    return patients


def hook_body(data: PatientData) -> bytes:
    """A patient-view call with complete prefetch, and a fresh hookInstance."""
    return orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/soak", "patientId": data.patient_id},
            "prefetch": {
                "patient": data.patient,
                "conditions": _searchset(data.conditions),
                "observations": _searchset(data.observations),
                "familyHistory": None,
            },
        }
    )


_ISO_DATE = re.compile(rb'(?<=")(\d{4})-(\d{2})-(\d{2})')


def _shifted(document: bytes, end: date) -> bytes:
    """``document`` with every ISO date moved by one offset so that the newest is ``end``."""
    found = [date(int(y), int(m), int(d)) for y, m, d in _ISO_DATE.findall(document)]
    if not found:
        return document
    offset = end - max(found)
    return _ISO_DATE.sub(lambda match: (date(*map(int, match.groups())) + offset).isoformat().encode(), document)


def _is_vital(observation: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == "http://loinc.org" and coding.get("code") in _VITAL_CODES
        for coding in (observation.get("code") or {}).get("coding", [])
    )


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources],
    }
