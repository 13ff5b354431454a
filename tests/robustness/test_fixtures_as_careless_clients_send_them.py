"""The shared fixtures sent the way careless EHR integrations send them: same answer, no error.

``tests/engine/test_fixtures_e2e.py`` sends every fixture file as a conformant client would
(each prefetch key holding exactly what its template asks for) and checks the exact cards.
Here the same data arrives as real integrations also send it, and the service must answer 200
with the same cards (rule, indicator, summary) as for the conformant call:

- the whole transaction Bundle (every resource type, ``urn:uuid`` references, unfiltered
  Observations) under every search key, so each resource arrives three times;
- the conformant searchsets, with every entry listed twice;
- the single-resource files (AU Core, HL7 examples) grouped by the patient they are about
  (Patient, weight, height, BMI and family history together), which no file holds alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.cdshooks.models import CardsResponse
from tests.conftest import SHARED_FIXTURES
from tests.support.prefetch import conformant_prefetch, searchset

EVALUATED_AT = datetime(2020, 6, 1, 12, 0, tzinfo=UTC)
SERVICES = ("back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance")
Group = tuple[list[Path], list[dict[str, Any]], dict[str, Any] | None]


def _patient_of(resource: dict[str, Any]) -> str:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return str(reference).rsplit("/", 1)[-1].removeprefix("urn:uuid:")


def _groups() -> dict[str, Group]:
    """Group name -> (its files, its resources, the whole Bundle when it came as one)."""
    groups: dict[str, Group] = {}
    for path in sorted(SHARED_FIXTURES.glob("*/*.json")):
        data = orjson.loads(path.read_bytes())
        if data.get("resourceType") == "Bundle":
            groups[path.stem[:40]] = ([path], [e["resource"] for e in data.get("entry", []) if "resource" in e], data)
        else:
            files, resources, _ = groups.setdefault(f"patient-{_patient_of(data)}", ([], [], None))
            files.append(path)
            resources.append(data)
    return groups


GROUPS = _groups()


def _prefetch(templates: dict[str, str], group: Group, *, style: str) -> dict[str, Any]:
    _, resources, whole = group
    if style == "whole-bundle":
        everything = whole or searchset(resources)
        patient = next((r for r in resources if r["resourceType"] == "Patient"), None)
        return {key: patient if template.startswith("Patient/") else everything for key, template in templates.items()}
    return {key: conformant_prefetch(template, resources, twice=style == "entries-twice") for key, template in templates.items()}


@pytest.fixture(scope="module")
def careless_client(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite_template: Path) -> Iterator[TestClient]:
    from service.app import create_app
    from service.settings import Settings

    directory = tmp_path_factory.mktemp("careless")
    shutil.copyfile(migrated_sqlite_template, directory / "cds.sqlite3")  # else shutdown waits 5 s to write the audit
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite:///{directory / 'cds.sqlite3'}", auth="off",
        patient_key="careless-patient-key-0123456789", log_format="text",
    )
    with TestClient(create_app(settings, clock=lambda: EVALUATED_AT), base_url="http://testserver") as client:
        yield client


def _cards(client: TestClient, name: str, group: Group, *, style: str) -> list[tuple[str, str, str]]:
    _, resources, _ = group
    patient_id = next((r["id"] for r in resources if r["resourceType"] == "Patient"), name.removeprefix("patient-"))
    templates = {s["id"]: s["prefetch"] for s in client.get("/cds-services").json()["services"]}
    answered = []
    for service_id in SERVICES:
        body = {
            "hook": "patient-view",
            "hookInstance": f"careless-{name}-{service_id}-{style}",
            "context": {"patientId": patient_id, "userId": "Practitioner/careless"},
            "prefetch": _prefetch(templates[service_id], group, style=style),
        }
        response = client.post(f"/cds-services/{service_id}", content=orjson.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == 200, f"{name} {style} -> {service_id}: {response.status_code} {response.text[:300]}"
        cards = CardsResponse.model_validate(response.json()).cards
        answered += [(card.source.topic.code if card.source.topic else "", card.indicator, card.summary) for card in cards]
    return answered


def test_every_fixture_file_is_in_a_group() -> None:
    grouped = sorted(path for files, _, _ in GROUPS.values() for path in files)
    assert grouped == sorted(SHARED_FIXTURES.glob("*/*.json"))
    assert len(grouped) == 23, f"expected the 23 shared fixture files under {SHARED_FIXTURES}, found {len(grouped)}"


@pytest.mark.parametrize("style", ["whole-bundle", "entries-twice"])
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_careless_prefetch_gets_the_conformant_answer(careless_client: TestClient, name: str, style: str) -> None:
    conformant = _cards(careless_client, name, GROUPS[name], style="conformant")
    assert _cards(careless_client, name, GROUPS[name], style=style) == conformant

