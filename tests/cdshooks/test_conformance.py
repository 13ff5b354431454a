"""CDS Hooks 2.0 conformance cases 3, 15, 16, 17 and 18 (cds-hooks-2.0.md section 10), end to end.

The request is the shipped example (a Synthea patient with knee osteoarthritis and BMI 27.9),
so the responses hold real cards with suggestions.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.examples import example
from tests.support.no_empty_values import assert_no_null_or_empty

SERVICES = ("back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance")
EXAMPLE = example("patient-view-request.json")


def _request(service_id: str) -> dict[str, Any]:
    """The example request with only the prefetch keys this service declares."""
    body = copy.deepcopy(EXAMPLE)
    body["hookInstance"] = str(uuid.uuid4())
    declared = {"back-knee-injury-referral": ("patient", "conditions"),
                "back-knee-care-guidance": ("patient", "conditions", "observations")}.get(service_id)
    if declared:
        body["prefetch"] = {key: value for key, value in body["prefetch"].items() if key in declared}
    return body


def _all_cards(client: TestClient) -> list[dict[str, Any]]:
    cards = []
    for service_id in SERVICES:
        response = client.post(f"/cds-services/{service_id}", json=_request(service_id))
        assert response.status_code == 200, response.text
        cards.extend(response.json()["cards"])
    return cards


def test_case_3_happy_path_cards_have_the_required_shape(client: TestClient) -> None:
    cards = _all_cards(client)
    assert len(cards) >= 3
    uuids = [card["uuid"] for card in cards]
    assert len(uuids) == len(set(uuids))
    for card in cards:
        assert_no_null_or_empty(card, card["uuid"])
        assert len(card["summary"]) <= 139
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["label"]


def test_case_15_static_card_rules(client: TestClient) -> None:
    for card in _all_cards(client):
        suggestions = card.get("suggestions", [])
        if suggestions:
            assert card["selectionBehavior"] in {"at-most-one", "any"}
            if card["selectionBehavior"] == "at-most-one":
                assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
        for suggestion in suggestions:
            assert suggestion["label"] and suggestion["uuid"]
            for action in suggestion.get("actions", []):
                assert action["type"] in {"create", "update", "delete"} and action["description"]
                if action["type"] in {"create", "update"}:
                    assert action["resource"]["resourceType"]
                else:
                    assert action["resourceId"]
        for link in card["links"]:
            assert link["label"] and link["url"].startswith("http") and link["type"] in {"absolute", "smart"}
            assert "appContext" not in link or link["type"] == "smart"
        for reason in card["overrideReasons"]:
            assert reason["code"] and reason["system"] and reason["display"]
        topic = card["source"]["topic"]
        assert topic["code"] and topic["system"]
        for key in ("url", "icon"):
            if key in card["source"]:
                assert card["source"][key].startswith(("http://", "https://"))


def _first_card_with_suggestion(client: TestClient) -> tuple[str, str, dict[str, Any]]:
    for service_id in SERVICES:
        for card in client.post(f"/cds-services/{service_id}", json=_request(service_id)).json()["cards"]:
            if card.get("suggestions"):
                return service_id, card["uuid"], card
    raise AssertionError("the example patient should get a card with a suggestion")


def test_case_16_accepted_feedback_is_stored_and_idempotent(client: TestClient) -> None:
    service_id, card_uuid, card = _first_card_with_suggestion(client)
    item = {
        "card": card_uuid,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": "2024-01-01T00:00:00Z",
    }
    first = client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [item]})
    again = client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [item]})
    assert first.status_code == 200 and again.status_code == 200
    metrics = client.get("/metrics").text
    assert 'cds_feedback_total{outcome="accepted"} 1.0' in metrics  # the repeat is stored once


def test_feedback_that_contradicts_its_card_is_400_and_nothing_is_stored(client: TestClient) -> None:
    """A suggestion the card never had, or another service's card: a client error, not an item to count."""
    service_id, card_uuid, card = _first_card_with_suggestion(client)
    good = {"card": card_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}], "outcomeTimestamp": "2024-01-01T00:00:00Z"}
    made_up = {**good, "acceptedSuggestions": [{"id": "11111111-1111-4111-8111-111111111111"}]}
    response = client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [good, made_up]})
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"card '{card_uuid}' has no suggestion '11111111-1111-4111-8111-111111111111'; nothing of this request was stored"
    )
    other = next(s for s in ("back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance") if s != service_id)
    response = client.post(f"/cds-services/{other}/feedback", json={"feedback": [good]})
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"card '{card_uuid}' was issued by service '{service_id}'; send its feedback to /cds-services/{service_id}/feedback")
    assert 'cds_feedback_total{outcome="accepted"}' not in client.get("/metrics").text


@pytest.mark.parametrize(
    "override",
    [
        {"reason": {"code": "not-relevant", "system": "urn:back-knee-cds:override-reason", "display": "Not relevant"},
         "userComment": "seen by physio"},
        None,
    ],
)
def test_case_17_overridden_feedback_with_and_without_a_reason(client: TestClient, override: dict | None) -> None:  # type: ignore[type-arg]
    service_id, card_uuid, _card = _first_card_with_suggestion(client)
    item: dict[str, Any] = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2024-01-01T00:00:00Z"}
    if override:
        item["overrideReason"] = override
    assert client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [item]}).status_code == 200


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"card": "c", "outcome": "rejected", "outcomeTimestamp": "2024-01-01T00:00:00Z"}, "outcome"),
        ({"card": "c", "outcome": "accepted", "outcomeTimestamp": "2024-01-01T00:00:00Z"}, "acceptedSuggestions"),
        ({"card": "c", "outcome": "overridden"}, "outcomeTimestamp"),
        # No UTC time in the calendar: clamped, two such items were one (found by a bug hunt).
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "9999-12-31T23:59:59-05:00"}, "outcomeTimestamp"),
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "0001-01-01T00:00:00+23:59"}, "outcomeTimestamp"),
    ],
)
def test_case_17_malformed_feedback_is_400(client: TestClient, item: dict[str, Any], message: str) -> None:
    response = client.post("/cds-services/back-knee-risk-factors/feedback", json={"feedback": [item]})
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59+05:00", "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59"])
def test_feedback_at_the_calendar_edges_with_a_utc_time_is_stored(client: TestClient, timestamp: str) -> None:
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": timestamp}
    response = client.post("/cds-services/back-knee-risk-factors/feedback", json={"feedback": [item]})
    assert response.status_code == 200, response.text


def test_feedback_on_an_unknown_card_is_accepted(client: TestClient) -> None:
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2024-01-01T00:00:00Z"}
    response = client.post("/cds-services/back-knee-risk-factors/feedback", json={"feedback": [item]})
    assert response.status_code == 200


def test_case_18_tolerant_reader(client: TestClient) -> None:
    body = _request("back-knee-risk-factors")
    body["extension"] = {"com.example.timestamp": "2024-01-01T00:00:00Z"}
    body["someFutureField"] = {"nested": [1, 2, 3]}
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": "opaque-token", "token_type": "Bearer", "expires_in": 300,
        "scope": "user/Patient.rs user/Condition.rs user/Observation.rs", "subject": "back-knee-cds",
    }
    conditions = body["prefetch"]["conditions"]
    conditions["link"] = [{"relation": "self", "url": "https://ehr.example.org/fhir/Condition?patient=x"}]
    response = client.post("/cds-services/back-knee-risk-factors", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["cards"]
