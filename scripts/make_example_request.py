"""Write ``examples/patient-view-request.json`` from a Synthea patient bundle.

The example request in the README must be real FHIR data, not a hand-made patient, and anyone
must be able to see how it was made from its source: this script is that record. It turns one
Synthea transaction Bundle into the CDS Hooks ``patient-view`` request an EHR would send to
``back-knee-risk-factors`` with every prefetch key filled, the way a FHIR server answers the
service's prefetch queries (see ``rules/services.yaml``):

- ``patient``: the Patient resource;
- ``conditions``: a searchset Bundle of all the patient's Conditions;
- ``observations``: a searchset Bundle of the Observations with the BMI, weight and height
  LOINC codes the prefetch query names;
- ``familyHistory``: the patient has no FamilyMemberHistory, so an empty searchset Bundle.

The one change to the resources: Synthea's ``urn:uuid:<id>`` references become ``Type/<id>``,
as a FHIR server returns them. Usage::

    python3 scripts/make_example_request.py SYNTHEA_BUNDLE.json [--out examples/patient-view-request.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["build_request", "main"]

SERVICE_ID = "back-knee-risk-factors"
# A fixed id keeps the file stable across regenerations; real EHRs send a new one per call.
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
SERVICES_FILE = Path(__file__).resolve().parent.parent / "rules" / "services.yaml"


def _observation_codes(services_file: Path) -> set[str]:
    """The LOINC codes in the service's ``observations`` prefetch query."""
    services = yaml.safe_load(services_file.read_text(encoding="utf-8"))["services"]
    template = next(s for s in services if s["id"] == SERVICE_ID)["prefetch"]["observations"]
    codes = template.split("code=", 1)[1].split("&", 1)[0]
    return {item.split("|", 1)[1] for item in codes.split(",")}


def _relative_references(value: Any, types: dict[str, str]) -> Any:
    """``{"reference": "urn:uuid:X"}`` -> ``{"reference": "Type/X"}`` for every resource in the bundle."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item.startswith("urn:uuid:"):
                target = item.removeprefix("urn:uuid:")
                out[key] = f"{types[target]}/{target}" if target in types else item
            else:
                out[key] = _relative_references(item, types)
        return out
    if isinstance(value, list):
        return [_relative_references(item, types) for item in value]
    return value


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource, "search": {"mode": "match"}} for resource in resources],
    }


def _codes(resource: dict[str, Any]) -> set[str]:
    return {coding.get("code", "") for coding in resource.get("code", {}).get("coding", [])}


def build_request(bundle: dict[str, Any], *, observation_codes: set[str]) -> dict[str, Any]:
    """The patient-view request for the one patient in ``bundle``."""
    resources = [entry["resource"] for entry in bundle.get("entry", [])]
    types = {resource["id"]: resource["resourceType"] for resource in resources if "id" in resource}
    resources = [_relative_references(resource, types) for resource in resources]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise ValueError(f"expected one Patient in the bundle, found {len(patients)}")
    patient = patients[0]
    practitioners = [r for r in resources if r["resourceType"] == "Practitioner"]
    user = f"Practitioner/{practitioners[0]['id']}" if practitioners else "Practitioner/example"
    return {
        "hook": "patient-view",
        "hookInstance": HOOK_INSTANCE,
        "context": {"userId": user, "patientId": patient["id"]},
        "prefetch": {
            "patient": patient,
            "conditions": _searchset([r for r in resources if r["resourceType"] == "Condition"]),
            "observations": _searchset(
                [r for r in resources if r["resourceType"] == "Observation" and _codes(r) & observation_codes]
            ),
            "familyHistory": _searchset([r for r in resources if r["resourceType"] == "FamilyMemberHistory"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a Synthea patient Bundle (JSON)")
    parser.add_argument("--out", type=Path, default=Path("examples/patient-view-request.json"))
    args = parser.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
        request = build_request(bundle, observation_codes=_observation_codes(SERVICES_FILE))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.bundle}: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(request, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} (patient {request['context']['patientId']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
