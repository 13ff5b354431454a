"""Small FHIR R4 resources for the facts tests, written out in the tests that use them."""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path
from typing import Any

from service.fhir import FactDefinitions, PatientFacts, compute_facts

SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

PATIENT_ID = "p1"
TODAY = date(2024, 6, 15)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"

_ids = itertools.count(1)


def load_fixture(relative: str) -> dict[str, Any]:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def patient(resource_id: str = PATIENT_ID, *, birth: str | None = "1960-03-01", **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if birth is not None:
        resource["birthDate"] = birth
    resource.update(fields)
    return resource


def condition(
    code: str,
    system: str = SNOMED,
    *,
    onset: str | None = "2024-01-10",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    display: str | None = None,
    subject: str = f"Patient/{PATIENT_ID}",
    resource_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": resource_id or f"c{next(_ids)}",
        "code": {"coding": [coding]},
        "subject": {"reference": subject},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if onset:
        resource["onsetDateTime"] = onset
    resource.update(fields)
    return resource


def observation(
    loinc: str,
    value: float | int | None,
    unit: str | None,
    *,
    when: str,
    status: str = "final",
    subject: str = f"Patient/{PATIENT_ID}",
    resource_id: str | None = None,
    unit_text: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id or f"o{next(_ids)}",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity.update({"system": UCUM, "code": unit, "unit": unit_text or unit})
        resource["valueQuantity"] = quantity
    resource.update(fields)
    return resource


def weight(kg: float, when: str, **fields: Any) -> dict[str, Any]:
    return observation("29463-7", kg, "kg", when=when, **fields)


def height(cm: float, when: str, **fields: Any) -> dict[str, Any]:
    return observation("8302-2", cm, "cm", when=when, **fields)


def bmi(value: float, when: str, **fields: Any) -> dict[str, Any]:
    return observation("39156-5", value, "kg/m2", when=when, **fields)


def family_history(
    code: str,
    system: str = SNOMED,
    *,
    relationship: str = "MTH",
    relationship_display: str | None = "mother",
    status: str = "completed",
    patient_ref: str = f"Patient/{PATIENT_ID}",
    resource_id: str | None = None,
) -> dict[str, Any]:
    relation: dict[str, Any] = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": relationship}
    if relationship_display:
        relation["display"] = relationship_display
    return {
        "resourceType": "FamilyMemberHistory",
        "id": resource_id or f"f{next(_ids)}",
        "status": status,
        "patient": {"reference": patient_ref},
        "relationship": {"coding": [relation]},
        "condition": [{"code": {"coding": [{"system": system, "code": code}]}}],
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def facts_of(
    definitions: FactDefinitions,
    *resources: dict[str, Any],
    today: date = TODAY,
    patient_id: str | None = PATIENT_ID,
    with_patient: bool = True,
) -> PatientFacts:
    """compute_facts over the resources, with the default patient added unless told not to."""
    data = list(resources)
    if with_patient and not any(r.get("resourceType") == "Patient" for r in data):
        data.insert(0, patient())
    return compute_facts(data, patient_id=patient_id, today=today, definitions=definitions)


def holding(facts: PatientFacts) -> set[str]:
    return {name for name, fact in facts.facts.items() if fact.holds}
