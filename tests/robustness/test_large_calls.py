"""A large but legal hook call does not stop the server answering everything else meanwhile.

Validating what a call brought takes the service seconds when it is large: 15,000 distinct
Conditions, or one Condition with 90,000 codings. Computed on the event loop, that held every other
request of the worker, liveness probes included: an orchestrator whose probe timed out would restart
a healthy service. A large call (``service/cdshooks/off_loop.py``) computes its facts in a worker
thread instead.

The service runs as its own process (the console script, uvicorn, real sockets), with its
validation memo off, so the call validates every one of its Conditions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from robustness.served import Served, serve, service_env, upgrade_database
from service.cdshooks.off_loop import OFF_LOOP_RESOURCES
from tests.support.prefetch import conformant_prefetch

SERVICE = "back-knee-risk-factors"
PATIENT_ID = "large-call"
# Enough Conditions that validating them takes the service well over the probes' rhythm, on the
# fastest machine seen (about 0.1 ms each): the second half of the call spans many probes.
CONDITIONS = 6 * OFF_LOOP_RESOURCES
# One Condition with this many codings besides its own: about 3 MB, validated for over a second.
CODINGS = 60_000
PROBE_PAUSE_SECONDS = 0.01


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("large-calls")
    env = service_env(workdir, f"sqlite:///{workdir / 'cds.sqlite3'}", CDS_VALIDATION_CACHE_SIZE="0")
    upgrade_database(env)
    with serve(env, log_path=workdir / "server.log") as served:
        yield served


def _knee_osteoarthritis(number: int) -> dict[str, Any]:
    """An active Condition the risk-factors rules read (SNOMED 239873007, clinical-codes.md), each
    with its own id and onset, so no two are the same resource."""
    return {
        "resourceType": "Condition",
        "id": f"oa-{number}",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "239873007", "display": "Osteoarthritis of knee"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "onsetDateTime": (date(1990, 1, 1) + timedelta(days=number)).isoformat(),
    }


def _many_conditions() -> list[dict[str, Any]]:
    return [_knee_osteoarthritis(number) for number in range(CONDITIONS)]


def _one_large_condition() -> list[dict[str, Any]]:
    """Counted as one resource: only its size says how long validating it takes."""
    condition = _knee_osteoarthritis(0)
    condition["code"]["coding"].extend({"system": "http://snomed.info/sct", "code": str(100_000 + number)} for number in range(CODINGS))
    return [condition]


def _large_call(templates: dict[str, str], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    resources = [{"resourceType": "Patient", "id": PATIENT_ID, "birthDate": "1958-04-02"}, *conditions]
    return {
        "hook": "patient-view",
        "hookInstance": f"large-call-{time.monotonic_ns()}",
        "context": {"patientId": PATIENT_ID, "userId": "Practitioner/large-call"},
        "prefetch": {key: conformant_prefetch(template, resources) for key, template in templates.items()},
    }


@pytest.mark.parametrize("conditions", [_many_conditions, _one_large_condition], ids=["6000-conditions", "one-3-MB-condition"])
async def test_the_server_answers_probes_while_a_large_call_is_computed(
    service: Served, conditions: Callable[[], list[dict[str, Any]]]
) -> None:
    """While a call with 6,000 Conditions, or one of 3 MB, is computed, /health/live goes on
    answering: the server is never silent for half the call (on the event loop, no probe could be
    answered until the call's facts were done)."""
    async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as client:
        discovery = (await client.get("/cds-services")).json()
        templates = next(s["prefetch"] for s in discovery["services"] if s["id"] == SERVICE)
        body = _large_call(templates, conditions())
        started = time.monotonic()
        call = asyncio.create_task(client.post(f"/cds-services/{SERVICE}", json=body))
        probes_answered_at: list[float] = []
        while not call.done():
            probe = await client.get("/health/live")
            assert probe.status_code == 200, probe.text
            probes_answered_at.append(time.monotonic())
            await asyncio.sleep(PROBE_PAUSE_SECONDS)
        response = await call
        ended = time.monotonic()

    assert response.status_code == 200, response.text[:500]
    assert any("239873007" in str(card) for card in response.json()["cards"]), "the call's Conditions were not read"
    # The longest the client waited for the server to answer anything: on the event loop, the
    # whole validation (most of the call); off it, about one probe's round trip.
    moments = [started, *probes_answered_at, ended]
    longest_silence = max(later - earlier for earlier, later in zip(moments, moments[1:]))
    assert longest_silence < (ended - started) / 2, (
        f"no probe answered for {longest_silence:.2f} s of a {ended - started:.2f} s call "
        f"({len(probes_answered_at)} answered in all): the call held the event loop"
    )
    assert service.server_errors() == []
