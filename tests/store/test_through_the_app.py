"""The store as the HTTP service uses it: readiness, feedback 200/503, hook calls with the database down,
suppression by a real override, and the lost-audit metric."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.store import upgrade_database
from tests.conftest import SettingsFactory
from tests.store.helpers import AbsentDatabase, rows
from tests.support.examples import example

SERVICE = "back-knee-risk-factors"


def _feedback(card_uuid: str, reason: str = "not-relevant") -> dict[str, Any]:
    body = example("feedback.json")
    item = body["feedback"][0]
    item["card"] = card_uuid
    item["overrideReason"]["reason"]["code"] = reason
    item["outcomeTimestamp"] = datetime.now(UTC).isoformat()
    return body


def _until(check: Callable[[], bool], *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.02)


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not found")


def _readiness_until(client: TestClient, reason: str | None) -> dict[str, Any]:
    """The readiness answer once it says ``reason`` (None: ready), waiting a generous bound for it.

    A readiness request shares a probe already running in the background (probes every 50 ms
    here), which may have looked at the database just before the test changed it; the next
    probe sees the change. So the answer right after a change may still be the old one.
    """
    answers: list[dict[str, Any]] = []

    def says_it() -> bool:
        response = client.get("/health/ready")
        answers.append({"status_code": response.status_code, **response.json()})
        if reason is None:
            return response.status_code == 200 and response.json()["status"] == "ready"
        return response.status_code == 503 and str(response.json()["reason"]).startswith(reason)

    try:
        _until(says_it)
    except AssertionError as exc:
        raise AssertionError(f"readiness never said {reason or 'ready'!r}; last answer {answers[-1]}") from exc
    return answers[-1]


def test_readiness_is_503_until_the_database_appears(make_settings: SettingsFactory, absent_database: AbsentDatabase) -> None:
    settings = make_settings(database_url=absent_database.url, database_retry_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        down = client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["reason"].startswith("database unreachable: ")
        assert client.head("/health/ready").status_code == 503  # probes that check with HEAD
        assert client.head("/health/live").status_code == 200
        absent_database.appear()
        _readiness_until(client, "migrations not applied")
        upgrade_database(absent_database.url)
        _readiness_until(client, None)
        assert client.head("/health/ready").status_code == 200


def test_the_app_migrates_by_itself_when_told_to(make_settings: SettingsFactory, absent_database: AbsentDatabase) -> None:
    settings = make_settings(database_url=absent_database.url, database_retry_seconds=0.05, migrate_on_start=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 503
        absent_database.appear()
        _until(lambda: client.get("/health/ready").status_code == 200)
    assert {"invocation", "feedback"} <= {row[0] for row in rows(absent_database.url, _table_names_query(absent_database.url))}


def _table_names_query(url: str) -> str:
    if url.startswith("sqlite"):
        return "SELECT name FROM sqlite_master WHERE type = 'table'"
    return "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"


def test_feedback_is_503_while_the_database_is_down_and_200_once_stored(
    make_settings: SettingsFactory, absent_database: AbsentDatabase
) -> None:
    settings = make_settings(database_url=absent_database.url, database_retry_seconds=0.05)
    body = _feedback("card-while-down")
    with TestClient(create_app(settings)) as client:
        refused = client.post(f"/cds-services/{SERVICE}/feedback", json=body)
        assert refused.status_code == 503
        assert refused.json() == {"error": "feedback could not be stored, or not confirmed stored; retry (a retried item is stored once)"}
        assert refused.headers["retry-after"] == "2"
        absent_database.appear()
        upgrade_database(absent_database.url)
        assert rows(absent_database.url, "SELECT count(*) FROM feedback") == [(0,)]
        stored = client.post(f"/cds-services/{SERVICE}/feedback", json=body)  # the EHR's retry
        assert stored.status_code == 200, stored.text
        assert stored.json() == {}
        assert rows(absent_database.url, "SELECT card_uuid, known_card FROM feedback") == [("card-while-down", False)]
        again = client.post(f"/cds-services/{SERVICE}/feedback", json=body)
        assert again.status_code == 200
        assert _metric(client, 'cds_feedback_total{outcome="overridden"}') == 1
    assert rows(absent_database.url, "SELECT count(*) FROM feedback") == [(1,)]


def test_hook_calls_answer_with_the_database_down_and_their_audit_is_written_later(
    make_settings: SettingsFactory, absent_database: AbsentDatabase
) -> None:
    settings = make_settings(database_url=absent_database.url, database_retry_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        response = client.post(f"/cds-services/{SERVICE}", json=example("patient-view-request.json"))
        assert response.status_code == 200, response.text
        cards = response.json()["cards"]
        assert cards
        absent_database.appear()
        upgrade_database(absent_database.url)
        _until(lambda: rows(absent_database.url, "SELECT count(*) FROM card_issued") == [(len(cards),)])
        assert _metric(client, "cds_audit_records_lost_total") == 0
    stored = {row.uuid for row in rows(absent_database.url, "SELECT uuid FROM card_issued")}
    assert stored == {card["uuid"] for card in cards}


def test_audit_records_beyond_the_queue_are_counted_in_the_metric(
    make_settings: SettingsFactory, absent_database: AbsentDatabase
) -> None:
    settings = make_settings(database_url=absent_database.url, database_retry_seconds=0.05, audit_queue_size=1)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.post(f"/cds-services/{SERVICE}", json=example("patient-view-request.json")).status_code == 200
        assert _metric(client, "cds_audit_records_lost_total") == 2


def test_a_suppressing_override_silences_the_rule_on_the_next_call(client: TestClient) -> None:
    request = example("patient-view-request.json")
    first = client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"]
    silenced = first[0]
    rule_id = silenced["source"]["topic"]["code"]
    stored = client.post(f"/cds-services/{SERVICE}/feedback", json=_feedback(silenced["uuid"], "already-addressed"))
    assert stored.status_code == 200, stored.text
    second = client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"]
    assert rule_id not in {card["source"]["topic"]["code"] for card in second}
    assert {card["source"]["topic"]["code"] for card in first} - {rule_id} == {card["source"]["topic"]["code"] for card in second}


def test_the_documented_feedback_example_silences_the_rule(client: TestClient) -> None:
    """An integrator copies the OpenAPI example from /docs: it must suppress as it says it does."""
    document = client.get("/openapi.json").json()
    examples = document["paths"]["/cds-services/{service_id}/feedback"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    body = examples["overridden-patient-declined"]["value"]
    request = example("patient-view-request.json")
    silenced = client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"][0]
    body["feedback"][0]["card"] = silenced["uuid"]
    body["feedback"][0]["outcomeTimestamp"] = datetime.now(UTC).isoformat()
    assert client.post(f"/cds-services/{SERVICE}/feedback", json=body).status_code == 200
    second = client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"]
    assert silenced["source"]["topic"]["code"] not in {card["source"]["topic"]["code"] for card in second}
