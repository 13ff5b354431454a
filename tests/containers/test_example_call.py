"""The README's curl walk-through, in process: the example request gets cards, feedback on one is stored."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.examples import example

SERVICE_ID = "back-knee-risk-factors"


def test_request_gets_cards_and_feedback_on_one_is_stored(client: TestClient) -> None:
    response = client.post(f"/cds-services/{SERVICE_ID}", json=example("patient-view-request.json"))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards, "the README's example patient (age 51, obesity diagnosis, knee osteoarthritis) should get cards"

    feedback = example("feedback.json")
    reason = feedback["feedback"][0]["overrideReason"]["reason"]
    offered = {(coding["system"], coding["code"]) for coding in cards[0]["overrideReasons"]}
    assert (reason["system"], reason["code"]) in offered, "feedback.json must use a reason the cards offer"
    feedback["feedback"][0]["card"] = cards[0]["uuid"]
    stored = client.post(f"/cds-services/{SERVICE_ID}/feedback", json=feedback)
    assert stored.status_code == 200, stored.text
