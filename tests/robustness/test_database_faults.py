"""Database faults through the HTTP service, with PostgreSQL behind a TCP proxy the test controls.

The app under test reaches its (real, scratch) PostgreSQL database through ``tcp_proxy.py``,
which can refuse connections (database down), hold them open and silent (a partition), or cut
them; the test also kills the app's server sessions with ``pg_terminate_backend``, which is what
a PostgreSQL restart does to a client. The PostgreSQL server itself is never stopped.

What must hold (interface.md, architecture.md, the store's contract):
- hook calls answer 200 with cards while the database is unreachable;
- their audit records wait in the queue and are written once it is back; past
  ``CDS_AUDIT_QUEUE_SIZE`` the newest are dropped and counted in ``cds_audit_records_lost_total``;
- feedback answers 503 while the database cannot store it, and no feedback item is ever
  acknowledged (200) without being in the ``feedback`` table;
- after the outage, or after every connection was killed, the service recovers by itself.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from robustness.traffic import load_patients
from service.app import create_app
from service.store.connection import Database
from service.store.database import DEFAULT_CONNECT_TIMEOUT_SECONDS
from service.store.store import SUPPRESSION_READ_SECONDS
from tests.conftest import REPO_ROOT, SettingsFactory
from tests.robustness.tcp_proxy import TcpProxy, proxy_to
from tests.support.scratch_postgres import postgres_admin_url, scratch_database

pytestmark = pytest.mark.postgres

EVALUATED_AT = datetime(2020, 6, 1, 12, 0, tzinfo=UTC)  # Chauncey Johnston's data is current then
RISK = "/cds-services/back-knee-risk-factors"
WAIT_SECONDS = 15.0


@pytest.fixture(scope="module")
def scratch_url() -> Iterator[str]:
    """A new PostgreSQL database at the schema head, on the server of CDS_TEST_DATABASE_URL."""
    admin = postgres_admin_url("database fault tests need PostgreSQL")
    with scratch_database(admin, prefix="bkc_faults") as url:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDS_")}, "CDS_DATABASE_URL": url}
        upgrade = subprocess.run([sys.executable, "-m", "service", "db", "upgrade"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert upgrade.returncode == 0, upgrade.stderr
        yield url


@pytest.fixture
def proxy(scratch_url: str) -> Iterator[TcpProxy]:
    parsed = make_url(scratch_url)
    with proxy_to(parsed.host or "127.0.0.1", parsed.port or 5432) as running:
        yield running


@pytest.fixture
def open_app(make_settings: SettingsFactory, scratch_url: str, proxy: TcpProxy) -> Iterator[Callable[..., TestClient]]:
    """Start the app on the proxied database; stopped at the end of the test."""
    clients: list[TestClient] = []
    proxied = make_url(scratch_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    def start(**overrides: Any) -> TestClient:
        settings = make_settings(database_url=proxied, database_retry_seconds=0.2, **overrides)
        client = TestClient(create_app(settings, clock=lambda: EVALUATED_AT), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return client

    yield start
    proxy.set_mode("forward")
    for client in clients:
        client.__exit__(None, None, None)


def _rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS:.0f} s: {what}")
        time.sleep(0.1)


def _hook_body() -> dict[str, Any]:
    """Chauncey Johnston (knee osteoarthritis, BMI 27.9): cards from back-knee-risk-factors on 2020-06-01."""
    (patient,) = [p for p in load_patients() if p.patient.get("name", [{}])[0].get("family", "").startswith("Johnston")]
    return {
        "hook": "patient-view",
        "hookInstance": f"db-faults-{uuid.uuid4()}",
        "context": {"patientId": patient.patient_id, "userId": "Practitioner/db-faults"},
        "prefetch": {
            "patient": patient.patient,
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in patient.conditions]},
            "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in patient.observations]},
            "familyHistory": None,
        },
    }


def _call(client: TestClient) -> tuple[str, list[dict[str, Any]]]:
    body = _hook_body()
    response = client.post(RISK, json=body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards, "the hook call must still produce its cards"
    return body["hookInstance"], cards


def _feedback(client: TestClient, card: dict[str, Any]) -> int:
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": next(r for r in card["overrideReasons"] if r["code"] == "not-relevant")},
        "outcomeTimestamp": "2020-06-01T12:05:00Z",
    }
    response = client.post(f"{RISK}/feedback", json={"feedback": [item]})
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert "retry" in response.json()["error"]
    return response.status_code


def _ready(client: TestClient) -> bool:
    return client.get("/health/ready").status_code == 200


def _lost(client: TestClient) -> float:
    match = re.search(r"^cds_audit_records_lost_total (\S+)$", client.get("/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


def _invocations(url: str, instances: list[str]) -> set[str]:
    found = _rows(url, "SELECT hook_instance FROM invocation WHERE hook_instance = ANY(:ids)", ids=instances)
    return {row[0] for row in found}


def _stored_feedback(url: str, uuids: list[str]) -> set[str]:
    return {row[0] for row in _rows(url, "SELECT card_uuid FROM feedback WHERE card_uuid = ANY(:ids)", ids=uuids)}


def test_database_down_cards_still_answered_audit_written_when_it_returns(
    open_app: Callable[..., TestClient], proxy: TcpProxy, scratch_url: str
) -> None:
    client = open_app()
    _eventually(lambda: _ready(client), "the app is ready")
    proxy.set_mode("refuse")
    assert proxy.accepted > 0, "the app must reach its database through the proxy"
    calls = [_call(client) for _ in range(5)]
    instances = [instance for instance, _ in calls]
    _eventually(lambda: not _ready(client), "readiness reports the database down")
    assert _invocations(scratch_url, instances) == set(), "nothing can have been written while the database was down"
    card = calls[0][1][0]
    assert _feedback(client, card) == 503
    assert _stored_feedback(scratch_url, [card["uuid"]]) == set()

    proxy.set_mode("forward")
    _eventually(lambda: _invocations(scratch_url, instances) == set(instances), "every queued audit record is written")
    issued = {row[0] for row in _rows(scratch_url, "SELECT uuid FROM card_issued")}
    assert {c["uuid"] for _, cards in calls for c in cards} <= issued
    _eventually(lambda: _ready(client), "the app is ready again, without a restart")
    assert _feedback(client, card) == 200
    assert _stored_feedback(scratch_url, [card["uuid"]]) == {card["uuid"]}
    assert _lost(client) == 0


async def test_an_outage_only_a_readiness_probe_saw_still_ends_by_itself(proxy: TcpProxy, scratch_url: str) -> None:
    """The readiness probe found the database down and no store operation did: once it is back, the
    supervisor must find out without anyone probing again. It stayed 'down' for good: audit
    records unwritten, suppressions ignored, JWT ids only in memory, until readiness was asked."""
    proxied = make_url(scratch_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    database = Database(proxied, retry_seconds=0.1, migrate_on_start=False, connect_timeout_seconds=2)
    database.start()
    try:
        await asyncio.wait_for(database.wait_usable(), WAIT_SECONDS)
        proxy.set_mode("refuse")
        proxy.cut()
        assert await database.probe() is not None  # what GET /health/ready does
        proxy.set_mode("forward")
        await asyncio.wait_for(database.wait_usable(), WAIT_SECONDS)  # nobody else probes here
    finally:
        await database.close()


def test_audit_queue_overflow_drops_the_newest_and_counts_them(
    open_app: Callable[..., TestClient], proxy: TcpProxy, scratch_url: str
) -> None:
    client = open_app(audit_queue_size=3)
    _eventually(lambda: _ready(client), "the app is ready")
    proxy.set_mode("refuse")
    instances = [_call(client)[0] for _ in range(8)]
    assert _lost(client) == 5
    proxy.set_mode("forward")
    _eventually(lambda: _invocations(scratch_url, instances) == set(instances[:3]), "the three queued records are written")
    time.sleep(0.5)
    assert _invocations(scratch_url, instances) == set(instances[:3]), "the five dropped records must not appear"
    assert _lost(client) == 5


def test_feedback_is_acknowledged_only_once_stored_through_repeated_outages(
    open_app: Callable[..., TestClient], proxy: TcpProxy, scratch_url: str
) -> None:
    client = open_app()
    _eventually(lambda: _ready(client), "the app is ready")
    cards = [card for _ in range(4) for card in _call(client)[1]]
    acknowledged: list[str] = []
    refused: list[str] = []
    for round_number, card in enumerate(cards * 2):
        if round_number % 3 == 1:
            proxy.set_mode("refuse")
        elif round_number % 3 == 2:
            proxy.cut()  # the connections die, the database stays reachable
            proxy.set_mode("forward")
        status = _feedback(client, card)
        (acknowledged if status == 200 else refused).append(card["uuid"])
    proxy.set_mode("forward")
    assert acknowledged and refused, f"the outages must have been seen: {len(acknowledged)} stored, {len(refused)} refused"
    assert set(acknowledged) <= _stored_feedback(scratch_url, acknowledged)


def test_service_recovers_after_postgresql_kills_its_connections(
    open_app: Callable[..., TestClient], scratch_url: str
) -> None:
    """pg_terminate_backend on every session of the app: what a PostgreSQL restart does to it."""
    client = open_app()
    _eventually(lambda: _ready(client), "the app is ready")
    before = [_call(client) for _ in range(3)]
    assert all(_feedback(client, cards[0]) == 200 for _, cards in before[:1])
    name = make_url(scratch_url).database
    killed = _rows(
        os.environ["CDS_TEST_DATABASE_URL"],
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()",
        name=name,
    )
    assert killed, "the app had open sessions to kill"
    after = [_call(client) for _ in range(3)]
    card = after[0][1][0]
    _eventually(lambda: _feedback(client, card) == 200, "feedback is stored again, without a restart of the app")
    instances = [instance for instance, _ in before + after]
    _eventually(lambda: _invocations(scratch_url, instances) == set(instances), "every audit record is written")
    _eventually(lambda: _ready(client), "the app reports ready")
    assert _stored_feedback(scratch_url, [card["uuid"]]) == {card["uuid"]}
    assert _lost(client) == 0



def test_database_partition_never_hangs_a_call(open_app: Callable[..., TestClient], proxy: TcpProxy, scratch_url: str) -> None:
    """Connections open but silent (packets lost): hook calls go on without suppressions after
    SUPPRESSION_READ_SECONDS; feedback fails within libpq's tcp_user_timeout (the connect timeout).

    Found here: the first hook calls after a partition waited the whole 5 s for the suppression read.
    """
    client = open_app()
    _eventually(lambda: _ready(client), "the app is ready")
    _call(client)  # the pool holds live connections now
    proxy.set_mode("blackhole")
    instances = []
    for _ in range(4):
        started = time.perf_counter()
        instances.append(_call(client)[0])
        assert time.perf_counter() - started < SUPPRESSION_READ_SECONDS + 1
    card = _call(client)[1][0]
    started = time.perf_counter()
    assert _feedback(client, card) == 503
    assert time.perf_counter() - started < DEFAULT_CONNECT_TIMEOUT_SECONDS + 2
    proxy.set_mode("forward")
    _eventually(lambda: _invocations(scratch_url, instances) == set(instances), "the audit records are written after the partition")
    _eventually(lambda: _feedback(client, card) == 200, "feedback is stored again")
