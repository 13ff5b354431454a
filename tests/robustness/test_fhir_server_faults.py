"""Fault injection: a real ``back-knee-cds serve`` whose FHIR server misbehaves.

The service runs as its own process (the console script, uvicorn, real sockets both ways) with
``CDS_FHIR_TIMEOUT_SECONDS=1`` and ``CDS_FHIR_PAGE_LIMIT=4``. Its FHIR server is either the
loopback FHIR test server (tests/support/fhir_server.py) with its failure switches, or the TCP
fault server (tcp_faults.py) that breaks HTTP itself. Whatever the FHIR server does, every hook
call ends in 200 or a 412 that says why, within the time budget plus 0.5 s: never a 5xx, never
a hang; a call whose prefetch is complete is never held up by a stalled server; and afterwards
the service is healthy and has logged no traceback.

(``tests/cdshooks/test_fhir_fallback.py`` covers each failure's exact 412 message in-process.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from robustness.served import Served, serve, service_env, upgrade_database
from tests.robustness.tcp_faults import FAULTS, FaultServer, serve_faults
from tests.support.fhir_server import FhirTestServer

BUDGET = 1.0  # CDS_FHIR_TIMEOUT_SECONDS
GRACE = 0.5  # the contract: an answer within the budget plus this
# The budget of the service the ordering tests use: calls with data must be answered before any
# stalled one times out, and dozens of calls at once on a loaded machine take over a second.
ORDERING_BUDGET = 4.0
PAGE_LIMIT = 4
TOKEN = "faults-access-token-1b8e07c3"
RISK = "/cds-services/back-knee-risk-factors"
REFERRAL = "/cds-services/back-knee-injury-referral"


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    with serve_faults() as server:
        yield server


@pytest.fixture(scope="module")
def service(fhir_server_session: FhirTestServer, faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve_with_budget(BUDGET, fhir_server_session, faults, tmp_path_factory)


@pytest.fixture(scope="module")
def ordering_service(
    fhir_server_session: FhirTestServer, faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    yield from _serve_with_budget(ORDERING_BUDGET, fhir_server_session, faults, tmp_path_factory)


def _serve_with_budget(
    budget: float, fhir_server_session: FhirTestServer, faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("faults")
    env = service_env(
        workdir,
        f"sqlite:///{workdir / 'cds.sqlite3'}",
        CDS_FHIR_SERVER_ALLOWLIST=f"{fhir_server_session.origin},{faults.origin}",
        CDS_FHIR_TIMEOUT_SECONDS=str(budget),
        CDS_FHIR_PAGE_LIMIT=str(PAGE_LIMIT),
    )
    upgrade_database(env)
    with serve(env, log_path=workdir / "server.log") as served:
        yield served


def _call(server: str, patient_id: str, *, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": f"faults-{time.monotonic_ns()}",
        "fhirServer": server,
        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"},
        "context": {"patientId": patient_id, "userId": "Practitioner/faults"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    # A client timeout well past either budget + grace: a hang shows up as a timeout here, not as a stuck test.
    response = await client.post(path, json=body, timeout=ORDERING_BUDGET + GRACE + 10)
    return response, time.perf_counter() - started


def _assert_prompt_412(response: httpx.Response, elapsed: float, *, says: str) -> None:
    assert response.status_code == 412, f"{response.status_code}: {response.text[:300]}"
    message = response.json()["error"]
    assert says in message, message
    assert TOKEN not in message
    assert elapsed < BUDGET + GRACE, f"answered after {elapsed:.2f} s, budget {BUDGET} s + {GRACE} s"


def _assert_timed_out_without_hanging(response: httpx.Response, elapsed: float) -> None:
    """For calls sent dozens at once: the answer within the budget is the single-call tests' to check."""
    assert response.status_code == 412, f"{response.status_code}: {response.text[:300]}"
    assert "timed out" in response.json()["error"]
    assert elapsed < ORDERING_BUDGET + 5, f"answered after {elapsed:.2f} s, budget {ORDERING_BUDGET} s"


@pytest.mark.parametrize(
    ("switches", "says"),
    [
        ({"delay_seconds": 30}, "timed out"),
        ({"reset_connection": True}, "closed the connection"),
        ({"garbage_json": True}, "not JSON"),
        ({"status": 500}, "answered 500"),
        ({"page_size": 1, "paginate_forever": True}, "page"),
    ],
    ids=["stall", "reset", "garbage-json", "500", "paginates-forever"],
)
async def test_a_misbehaving_fhir_server_ends_in_a_prompt_412(
    service: Served, fhir_server: FhirTestServer, switches: dict[str, Any], says: str
) -> None:
    fhir_server.behave(only_types={"Condition"}, **switches)
    kozey = fhir_server.data.patient_id("Kozey")
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        response, elapsed = await _post(client, REFERRAL, _call(fhir_server.base_url, kozey, prefetch={"patient": None}))
    _assert_prompt_412(response, elapsed, says=says)
    if switches.get("paginate_forever"):
        pages = [r for r in fhir_server.requests if r.resource_type == "Condition"]
        assert len(pages) <= PAGE_LIMIT, f"{len(pages)} pages fetched, limit {PAGE_LIMIT}"


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_fhir_server_that_breaks_http_ends_in_a_prompt_412(service: Served, faults: FaultServer, fault: str) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        response, elapsed = await _post(client, REFERRAL, _call(faults.base_url(fault), "p1", prefetch={"patient": None}))
    _assert_prompt_412(response, elapsed, says="prefetch key 'conditions' is missing and")
    assert fault in faults.seen, f"the {fault} server was never contacted"


async def test_stalled_calls_do_not_hold_up_calls_with_complete_prefetch(ordering_service: Served, fhir_server: FhirTestServer) -> None:
    """Six calls wait on a stalled FHIR server; twelve with complete prefetch (same fhirServer) answer first, with cards."""
    fhir_server.behave(delay_seconds=30)
    chauncey = fhir_server.data.patient_id("Johnston")
    complete = {
        "patient": fhir_server.data.by_id[("Patient", chauncey)],
        "conditions": _searchset(fhir_server.data.search("Condition", chauncey)),
        "observations": _searchset([o for o in fhir_server.data.search("Observation", chauncey) if _is_vital(o)]),
        "familyHistory": None,
    }
    results, finished = await _stalled_then_prompt(
        ordering_service,
        stalled=[_call(fhir_server.base_url, chauncey) for _ in range(6)],
        until_waiting=lambda: _until_stalled_on(fhir_server, "Condition", calls=6),
        prompt=[_call(fhir_server.base_url, chauncey, prefetch=complete) for _ in range(12)],
    )
    for kind, response, elapsed in results:
        if kind == "stalled":
            _assert_timed_out_without_hanging(response, elapsed)
        else:
            assert response.status_code == 200, response.text[:300]
            assert response.json()["cards"], "Chauncey Johnston's complete prefetch gives cards (knee osteoarthritis, BMI 27.9)"
    assert finished[:12] == ["prompt"] * 12, f"order of answers: {finished}"
    assert not [r for r in fhir_server.requests if r.params.get("patient") is None and r.resource_type != "Patient"]


async def test_a_stalled_fhir_server_does_not_hold_up_fetches_from_another(
    ordering_service: Served, faults: FaultServer, fhir_server: FhirTestServer
) -> None:
    """Forty calls fetch four keys each from a server that never answers; five calls to a healthy
    server, sent once those are waiting, answer 200 before any of the forty ends. Before: the one
    HTTP client's 100 connections were all held by the stalled server, so the healthy server's
    fetches waited for the stalled ones to time out (and under more load, timed out themselves)."""
    chauncey = fhir_server.data.patient_id("Johnston")

    async def until_waiting() -> None:
        deadline = time.monotonic() + 10
        while faults.seen.count("silent") < 50:  # the per-server cap: this many reach it, the rest wait for a slot
            assert time.monotonic() < deadline, "the stalled calls did not reach the silent server within 10 s"
            await asyncio.sleep(0.01)

    results, finished = await _stalled_then_prompt(
        ordering_service,
        stalled=[_call(faults.base_url("silent"), chauncey) for _ in range(40)],
        until_waiting=until_waiting,
        prompt=[_call(fhir_server.base_url, chauncey) for _ in range(5)],
    )
    for kind, response, elapsed in results:
        if kind == "stalled":
            _assert_timed_out_without_hanging(response, elapsed)
        else:
            assert response.status_code == 200, response.text[:300]
    assert finished[:5] == ["prompt"] * 5, f"order of answers: {finished}"


async def test_after_every_fault_the_service_is_healthy_and_logged_no_traceback(
    service: Served, ordering_service: Served, fhir_server: FhirTestServer
) -> None:
    fhir_server.behave(only_types={"Condition"}, delay_seconds=30)  # a timeout of its own: not left to the tests before it
    kozey = fhir_server.data.patient_id("Kozey")
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        response, elapsed = await _post(client, REFERRAL, _call(fhir_server.base_url, kozey, prefetch={"patient": None}))
        _assert_prompt_412(response, elapsed, says="timed out")
        assert (await client.get("/health/live")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'cds_fhir_fetches_total{outcome="timeout"}' in metrics
    for served in (service, ordering_service):
        assert served.server_errors() == []
        assert "Traceback" not in Path(served.log_path).read_text(encoding="utf-8")


async def _stalled_then_prompt(
    service: Served,
    *,
    stalled: list[dict[str, Any]],
    until_waiting: Callable[[], Awaitable[None]],
    prompt: list[dict[str, Any]],
) -> tuple[list[tuple[str, httpx.Response, float]], list[str]]:
    """Send the ``stalled`` calls, wait until they are waiting on their FHIR server, then send the
    ``prompt`` ones: every (kind, answer, seconds), and the kinds in the order they were answered."""
    finished: list[str] = []

    async def call(kind: str, body: dict[str, Any]) -> tuple[str, httpx.Response, float]:
        response, elapsed = await _post(client, RISK, body)
        finished.append(kind)
        return kind, response, elapsed

    async with httpx.AsyncClient(base_url=service.base_url, limits=httpx.Limits(max_connections=64)) as client:
        waiting = [asyncio.create_task(call("stalled", body)) for body in stalled]
        await until_waiting()
        answered = [asyncio.create_task(call("prompt", body)) for body in prompt]
        results = await asyncio.gather(*waiting, *answered)
    return results, finished


async def _until_stalled_on(fhir_server: FhirTestServer, resource_type: str, *, calls: int) -> None:
    """Wait until ``calls`` requests for ``resource_type`` reached the FHIR server (each call is then
    in the service, waiting on it). The bound is generous, not a speed claim: a loaded machine may
    take a while to get them there, and a fixed sleep could start the other calls too early."""
    deadline = time.monotonic() + 10
    while sum(r.resource_type == resource_type for r in fhir_server.requests) < calls:
        assert time.monotonic() < deadline, f"{calls} {resource_type} requests did not reach the FHIR server within 10 s"
        await asyncio.sleep(0.01)


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _is_vital(observation: dict[str, Any]) -> bool:
    codes = {"39156-5", "29463-7", "8302-2"}
    return any(c.get("code") in codes for c in (observation.get("code") or {}).get("coding", []))
