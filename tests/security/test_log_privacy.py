"""Full flows with every secret a CDS call carries; the captured logs and the database must hold none of them.

Sent: client JWTs (accepted, refused, replayed), a ``fhirAuthorization`` access token used
against a real loopback FHIR server, a patient with a name, and the raw patient id. Logged:
JSON lines at DEBUG (more than production's INFO), every logger in the process. The patient
may appear only as the keyed hash, and each hook call's lines carry its hookInstance. Stored:
every row of the audit database, written by the time the app has shut down.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.logs import configure_logging
from service.privacy import PatientHasher
from tests.cdshooks.requests import hook_request
from tests.conftest import SettingsFactory
from tests.security.conftest import BASE, ISS, bearer, write_clients
from tests.security.keys import ClientKey, jwks_of, make_key, sign
from tests.support.fhir_server import FhirTestServer

SERVICE_ID = "back-knee-risk-factors"
SERVICE = f"/cds-services/{SERVICE_ID}"
PATIENT_KEY = "log-scan-patient-key-0123456789ab"
GIVEN, FAMILY = "Zebulon", "Quixotic-Marchbanks"
PATIENT_ID = f"pt-{uuid.uuid4().hex[:12]}"
FHIR_TOKEN = f"fhir-access-{uuid.uuid4().hex}"
CONDITION_ID = f"cond-{uuid.uuid4().hex[:12]}"  # not built from the patient id, which may be stored nowhere


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "name": [{"use": "official", "given": [GIVEN], "family": FAMILY, "text": f"{GIVEN} {FAMILY}"}],
        "gender": "male",
        "birthDate": "1958-04-02",
    }


def condition() -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": CONDITION_ID,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "278860009", "display": "Chronic low back pain"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": f"{GIVEN} {FAMILY}"},
        "onsetDateTime": "2024-03-01",
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def test_the_patient_hash_is_an_hmac_under_the_key() -> None:
    """The stored patient hash depends on the key: an unkeyed SHA-256 of an id is reversed by enumeration."""
    hash_a, hash_b = PatientHasher(b"a" * 32)(PATIENT_ID), PatientHasher(b"b" * 32)(PATIENT_ID)
    assert hash_a != hash_b
    assert hash_a == hmac.new(b"a" * 32, PATIENT_ID.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def captured_logs(restore_logging: None) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    yield stream


def test_logs_and_database_hold_no_token_no_jwt_no_name_and_no_raw_patient_id(
    make_settings: SettingsFactory, tmp_path: Path, fhir_server: FhirTestServer, captured_logs: io.StringIO
) -> None:
    key: ClientKey = make_key("ES384", kid="log-scan")
    clients = write_clients(tmp_path / "clients.yaml", [{"iss": ISS, "jwks": jwks_of(key)}])
    settings = make_settings(
        auth="jwt",
        trusted_clients_file=clients,
        fhir_server_allowlist=fhir_server.base_url,
        patient_key=PATIENT_KEY,
        log_format="json",
        log_level="DEBUG",
    )
    fhir_server.put(patient())
    fhir_server.put(condition())
    fhir_server.behave(require_token=FHIR_TOKEN)
    jwts: list[str] = []

    def token(path: str = SERVICE, **options: Any) -> dict[str, str]:
        jwts.append(sign(key, iss=ISS, aud=f"{BASE}{path}", **options))
        return bearer(jwts[-1])

    full = hook_request(
        patient_id=PATIENT_ID,
        prefetch={"patient": patient(), "conditions": searchset(condition()), "observations": None, "familyHistory": None},
    )
    fallback = hook_request(
        patient_id=PATIENT_ID,
        fhirServer=fhir_server.base_url,
        fhirAuthorization={"access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"},
    )
    wrong_token = {**fallback, "hookInstance": str(uuid.uuid4()), "fhirAuthorization": {**fallback["fhirAuthorization"], "access_token": "wrong-" + FHIR_TOKEN}}

    with TestClient(create_app(settings), base_url=BASE) as client:
        answered = client.post(SERVICE, json=full, headers=token())
        fetched = client.post(SERVICE, json=fallback, headers=token())
        refused_by_fhir = client.post(SERVICE, json=wrong_token, headers=token())
        replay_headers = token()
        first = client.post(SERVICE, json={**full, "hookInstance": str(uuid.uuid4())}, headers=replay_headers)
        replayed = client.post(SERVICE, json={**full, "hookInstance": str(uuid.uuid4())}, headers=replay_headers)
        expired = client.post(SERVICE, json=full, headers=token(lifetime=-3600))
        forged = client.post(SERVICE, json=full, headers=bearer(sign(make_key("ES384", kid="log-scan"), iss=ISS, aud=f"{BASE}{SERVICE}")))
        bad_body = client.post(SERVICE, json={"hook": "patient-view", "context": {"patientId": PATIENT_ID}}, headers=token())
        feedback = client.post(
            f"{SERVICE}/feedback",
            json={"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2025-01-01T00:00:00Z"}]},
            headers=token(f"{SERVICE}/feedback"),
        )
    jwts.append(forged.request.headers["authorization"].removeprefix("Bearer "))

    assert [answered.status_code, fetched.status_code, refused_by_fhir.status_code] == [200, 200, 412]
    assert [first.status_code, replayed.status_code, expired.status_code, forged.status_code] == [200, 401, 401, 401]
    assert [bad_body.status_code, feedback.status_code] == [400, 200]
    assert answered.json()["cards"], "the patient should have fired at least one card (the flow must reach the engine)"
    assert any(r.authorization == f"Bearer {FHIR_TOKEN}" for r in fhir_server.requests), "the FHIR token was really used"

    text = captured_logs.getvalue()
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert len(lines) > 10, text

    secrets = {"FHIR access token": FHIR_TOKEN, "given name": GIVEN, "family name": FAMILY, "raw patient id": PATIENT_ID}
    for n, jwt_text in enumerate(jwts):
        secrets[f"JWT {n}"] = jwt_text
        secrets[f"JWT {n} signature"] = jwt_text.rsplit(".", 1)[1]
        secrets[f"JWT {n} payload"] = jwt_text.split(".")[1]
    leaked = {name for name, secret in secrets.items() if secret in text}
    assert not leaked, f"logs contain {sorted(leaked)}"
    with closing(sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))) as database:
        stored = "\n".join(database.iterdump())
    assert "INSERT INTO \"card_issued\"" in stored, "the cards should have been written (the scan must see them)"
    leaked = {name for name, secret in secrets.items() if secret in stored}
    assert not leaked, f"the database holds {sorted(leaked)}"

    # The patient appears only as the keyed hash (built here without PatientHasher, so an unkeyed hash fails).
    patient_hash = hmac.new(PATIENT_KEY.encode(), PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    hook_lines = [line for line in lines if line["event"] == "hook answered"]
    assert hook_lines and all(patient_hash.startswith(line["patient"]) for line in hook_lines)

    # Every line of a hook call carries its hookInstance, including lines that did not pass it themselves.
    fallback_lines = [line for line in lines if line.get("hookInstance") == fallback["hookInstance"]]
    events = {line["event"] for line in fallback_lines}
    assert {"fetching prefetch from the FHIR server", "FHIR server call", "hook answered"} <= events, events
    assert len({line["request_id"] for line in fallback_lines}) == 1
    # Refusals say which check failed, with the client's issuer, and carry a request id.
    refusals = [line for line in lines if line["event"].startswith("request refused (401)")]
    assert sorted(line["check"] for line in refusals) == ["exp", "replay", "signature"]
    assert all(line["request_id"] for line in refusals)
    assert all(line.get("client") == ISS for line in hook_lines)
