"""Every shared fixture file through the HTTP service, on a fixed evaluation date.

Each file becomes the patient-view call a conformant EHR would make for it: the prefetch of
each service filled from the file's resources (the Patient, searchset Bundles of Conditions,
of the code-filtered Observations, of FamilyMemberHistory). No call may fail, and the cards are
exactly those the rules define for the data on 2020-06-01 (fixtures/fhir/README.md describes
each patient; the reasoning per patient is in the comments below).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest

from service.app import create_app
from tests.conftest import SHARED_FIXTURES
from tests.support.prefetch import conformant_prefetch

EVALUATED_AT = datetime(2020, 6, 1, 12, 0, tzinfo=UTC)
SERVICES = ("back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance")

# Rule ids fired per fixture file on 2020-06-01, in response order (services in the order above).
EXPECTED: dict[str, list[str]] = {
    # M, 44; active knee osteoarthritis; BMI 27.9 (2020-02-23) decides excess weight (the obesity
    # diagnosis does not matter with a BMI): knee complaint + excess weight.
    "Chauncey_Johnston": ["risk-factors", "knee-pain-back-risk", "weight-management", "knee-arthritis-care"],
    # M, 62; ACL injury (resolved) and ankle sprain = injury history; BMI 27.9: n = 3, no complaint.
    "Burton_Kozey": ["risk-factors"],
    # F, 74; BMI 27.9 (2019-09-22); the wrist fracture is not a lower-limb injury and the
    # osteoporotic fracture is not an injury: n = 2.
    "Twyla_Moen": ["risk-factors"],
    # F, 50 (born 1970-05-28); BMI 30.1 (2020-04-17); chronic paralysis is not an injury: n = 2.
    "Neva_Hyatt": ["risk-factors"],
    # M, 35; BMI 30.5 but no complaint and no other risk factor: n = 1.
    "Clemente_Kreiger": [],
    # M, 18; MCL injury in 2018 (injury history), BMI 19.7: n = 1, no active knee complaint.
    "Erin_Rempel": [],
    # M, 18; ankle fracture 2018 (injury history): n = 1.
    "Jackson_Bode": [],
    # M, 45; BMI 29.3; a wrist sprain is not a lower-limb injury: n = 1.
    "Xavier_Lueilwitz": [],
    # M, 32; sinusitis only: negative control.
    "Buster_Hoeger": [],
    # Deceased 2011: never a card, whatever the data (knee osteoarthritis, obesity, age 74).
    "Kallie862_Frami345": [],
}


def _fixture_files() -> list[Path]:
    return sorted(SHARED_FIXTURES.glob("*/*.json"))


def _resources(document: dict[str, Any]) -> list[dict[str, Any]]:
    if document.get("resourceType") == "Bundle":
        return [entry["resource"] for entry in document.get("entry", []) if isinstance(entry.get("resource"), dict)]
    return [document]


def _patient_id(resources: list[dict[str, Any]]) -> str:
    for resource in resources:
        if resource["resourceType"] == "Patient":
            return str(resource["id"])
    for resource in resources:
        for key in ("subject", "patient"):
            reference = (resource.get(key) or {}).get("reference", "")
            if reference.startswith("Patient/"):
                return str(reference.removeprefix("Patient/"))
    raise AssertionError("no patient in the fixture")


@pytest.fixture(scope="module")
def service_client(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite_template: Path) -> Iterator[TestClient]:
    from service.settings import Settings

    directory = tmp_path_factory.mktemp("e2e")
    shutil.copyfile(migrated_sqlite_template, directory / "cds.sqlite3")  # else shutdown waits 5 s to write the audit
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{directory / 'cds.sqlite3'}",
        auth="off",
        patient_key="test-patient-key-0123456789abcdef",
        log_format="text",
    )
    with TestClient(create_app(settings, clock=lambda: EVALUATED_AT), base_url="http://testserver") as client:
        yield client


def _call(client: TestClient, path: Path) -> list[dict[str, Any]]:
    resources = _resources(json.loads(path.read_text(encoding="utf-8")))
    patient_id = _patient_id(resources)
    discovery = {s["id"]: s for s in client.get("/cds-services").json()["services"]}
    cards: list[dict[str, Any]] = []
    for service_id in SERVICES:
        request = {
            "hook": "patient-view",
            "hookInstance": f"e2e-{path.stem[:40]}-{service_id}",
            "context": {"patientId": patient_id, "userId": "Practitioner/e2e"},
            "prefetch": {key: conformant_prefetch(template, resources) for key, template in discovery[service_id]["prefetch"].items()},
        }
        response = client.post(f"/cds-services/{service_id}", json=request)
        assert response.status_code == 200, f"{path.name} {service_id}: {response.status_code} {response.text}"
        cards.extend(response.json()["cards"])
    return cards


def _expected(path: Path) -> list[str]:
    for prefix, rules in EXPECTED.items():
        if path.name.startswith(prefix):
            return rules
    return []  # single resources (AU, HL7 examples): too little data for any rule


def test_every_fixture_file_is_covered() -> None:
    files = _fixture_files()
    if not files:
        pytest.skip(f"{SHARED_FIXTURES} is not here (shared fixtures live beside the project)")
    assert len(files) == 23
    bundles = [p.name for p in files if "synthea" in p.parent.name]
    assert all(any(name.startswith(prefix) for prefix in EXPECTED) for name in bundles)


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.stem[:40])
def test_fixture_patient_gets_exactly_the_expected_cards(service_client: TestClient, path: Path) -> None:
    cards = _call(service_client, path)
    assert [card["source"]["topic"]["code"] for card in cards] == _expected(path)
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["links"][0]["url"] == f"http://testserver/rules/{card['source']['topic']['code']}"
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                ServiceRequest.model_validate(action["resource"])


def test_knee_osteoarthritis_with_bmi_cards_explain_themselves(service_client: TestClient) -> None:
    path = next(p for p in _fixture_files() if p.name.startswith("Chauncey_Johnston"))
    resources = _resources(json.loads(path.read_text(encoding="utf-8")))
    oa = next(r for r in resources if r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == "239873007")
    cards = {card["source"]["topic"]["code"]: card for card in _call(service_client, path)}
    arthritis = cards["knee-arthritis-care"]
    assert arthritis["summary"].startswith("Knee arthritis, BMI 27.9:")
    assert f"`Condition/{oa['id']}`" in arthritis["detail"]
    assert "2020-02-23" in arthritis["detail"] and "(as of 2020-06-01)" in arthritis["detail"]
    request = arthritis["suggestions"][0]["actions"][0]["resource"]
    assert request["subject"] == {"reference": f"Patient/{_patient_id(resources)}"}
    assert {"reference": f"Condition/{oa['id']}", "display": "Osteoarthritis of knee (SNOMED 239873007)"} in request["reasonReference"]
    assert cards["weight-management"]["summary"].startswith("BMI 27.9, knee problem:")
    assert cards["risk-factors"]["summary"] == "Risk factors for back and knee pain: excess weight (BMI 27.9)"
