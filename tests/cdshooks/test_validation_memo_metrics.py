"""The validation memo across hook calls: the same prefetch sent to each service is validated once.

What /metrics says about it (``cds_validation_cache_*``) is what an operator sizes
CDS_VALIDATION_CACHE_SIZE by, so the numbers must be the memo's own.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cdshooks import off_loop
from tests.conftest import SettingsFactory
from tests.support.examples import example

EXAMPLE = example("patient-view-request.json")
SERVICE = "back-knee-risk-factors"


def _sample(metrics: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _call(client: TestClient, *, padding: int = 0) -> dict[str, object]:
    """The example call; with ``padding``, as many more resources under a key no template declares."""
    body = {**EXAMPLE, "hookInstance": str(uuid.uuid4())}
    if padding:
        entries = [{"resource": {"resourceType": "Basic", "id": f"pad-{number}"}} for number in range(padding)]
        body["prefetch"] = {**EXAMPLE["prefetch"], "padding": {"resourceType": "Bundle", "type": "searchset", "entry": entries}}
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("padding", [0, off_loop.OFF_LOOP_RESOURCES], ids=["on-the-loop", "in-a-worker-thread"])
def test_a_repeated_prefetch_is_answered_from_the_memo(client: TestClient, padding: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when the calls bring enough resources to be computed in a worker thread: what such a
    call learnt is remembered once it is done, and its lookups are counted."""
    in_thread = []
    facts = off_loop.FactsRunner.in_thread

    async def counted(self: off_loop.FactsRunner, compute: Any) -> Any:
        in_thread.append(compute)
        return await facts(self, compute)

    monkeypatch.setattr(off_loop.FactsRunner, "in_thread", counted)  # counts, and computes as ever
    first = _call(client, padding=padding)
    assert len(in_thread) == (1 if padding else 0)
    metrics = client.get("/metrics").text
    misses = _sample(metrics, 'cds_validation_cache_lookups_total{result="miss"}')
    assert misses > 0 and _sample(metrics, 'cds_validation_cache_lookups_total{result="hit"}') == 0
    assert _sample(metrics, "cds_validation_cache_entries") == misses
    second = _call(client, padding=padding)
    metrics = client.get("/metrics").text
    assert _sample(metrics, 'cds_validation_cache_lookups_total{result="hit"}') == misses
    assert _sample(metrics, 'cds_validation_cache_lookups_total{result="miss"}') == misses
    assert [card["summary"] for card in second["cards"]] == [card["summary"] for card in first["cards"]]  # type: ignore[index,union-attr]


def test_size_zero_validates_every_call(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(validation_cache_size=0)), base_url="http://testserver") as client:
        _call(client)
        _call(client)
        metrics = client.get("/metrics").text
    assert _sample(metrics, 'cds_validation_cache_lookups_total{result="hit"}') == 0
    assert _sample(metrics, "cds_validation_cache_entries") == 0
