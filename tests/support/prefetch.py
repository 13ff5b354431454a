"""Prefetch values built from a patient's resources, the way a conformant EHR fills each template.

Shared by the end-to-end fixture tests (``tests/engine/test_fixtures_e2e.py``) and the careless
client tests (``tests/robustness/test_fixtures_as_careless_clients_send_them.py``): the second
compares its answers with the conformant ones, so both must build the conformant call alike.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["conformant_prefetch", "searchset"]

_LOINC_CODE = re.compile(r"http://loinc\.org\|([0-9-]+)")


def searchset(resources: list[dict[str, Any]], *, twice: bool = False) -> dict[str, Any]:
    """A searchset Bundle of ``resources``; ``twice`` lists every entry twice (as some EHRs do)."""
    entries = [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources), "entry": entries * 2 if twice else entries}


def conformant_prefetch(template: str, resources: list[dict[str, Any]], *, twice: bool = False) -> Any:
    """What a conformant EHR puts under a prefetch key with this ``template`` for these resources.

    ``Patient/{{context.patientId}}``: the Patient (None without one); ``Type?patient=...``: a
    searchset of that type, filtered to the template's LOINC codes when it names any.
    """
    if template.startswith("Patient/"):
        return next((r for r in resources if r["resourceType"] == "Patient"), None)
    resource_type = template.split("?", 1)[0]
    found = [r for r in resources if r["resourceType"] == resource_type]
    codes = set(_LOINC_CODE.findall(template))
    if codes:
        found = [r for r in found if {c.get("code") for c in r.get("code", {}).get("coding", [])} & codes]
    return searchset(found, twice=twice)
