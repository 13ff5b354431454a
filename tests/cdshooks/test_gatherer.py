"""What the Gatherer hands the rules, fetched from the real loopback FHIR server (tests/support/fhir_server.py).

These look at the gathered data itself (merged pages, reads, budgets); the HTTP contract of the
same paths (412, 413, what the server saw) is in test_fhir_fallback.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from service.cdshooks.errors import PayloadTooLarge, PrefetchUnavailable
from service.cdshooks.gathering import Gathered, Gatherer
from service.cdshooks.models import HookRequest
from service.metrics import Metrics
from tests.support.fhir_server import FhirTestServer

TOKEN = "gatherer-test-token-5f1c"
LOINC = "http://loinc.org"
TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": f"Observation?patient={{{{context.patientId}}}}&code={LOINC}|39156-5,{LOINC}|29463-7,{LOINC}|8302-2",
    "familyHistory": "FamilyMemberHistory?patient={{context.patientId}}",
}

GathererFactory = Callable[..., Gatherer]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield client


@pytest.fixture
def make_gatherer(http: httpx.AsyncClient, fhir_server: FhirTestServer) -> GathererFactory:
    def build(**overrides: Any) -> Gatherer:
        options: dict[str, Any] = {
            "metrics": Metrics(),
            "allowlist": [fhir_server.base_url],
            "timeout_seconds": 5.0,
            "page_limit": 10,
            "max_resources": 50_000,
            "max_bytes": 5 * 1024 * 1024,
            "max_depth": 64,
        }
        options.update(overrides)
        return Gatherer(http, **options)

    return build


def request(fhir_server: FhirTestServer, patient_id: str, *, prefetch: dict[str, Any] | None = None) -> HookRequest:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": patient_id, "userId": "Practitioner/example"},
        "fhirServer": fhir_server.base_url,
        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return HookRequest.model_validate(body)


def ids(bundle: dict[str, Any] | None) -> list[str]:
    assert bundle is not None
    return sorted(entry["resource"]["id"] for entry in bundle.get("entry", []))


def expected_ids(fhir_server: FhirTestServer, kind: str, patient_id: str, codes: set[str] | None = None) -> list[str]:
    """Straight from the fixture data, not through HTTP, to check what the service assembled."""
    found = fhir_server.data.search(kind, patient_id)
    if codes is not None:
        found = [r for r in found if any(f"{c.get('system')}|{c.get('code')}" in codes for c in r["code"]["coding"])]
    return sorted(r["id"] for r in found)


async def test_every_missing_key_is_fetched_with_its_data(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    kozey = fhir_server.data.patient_id("Kozey")
    gathered = (await make_gatherer().gather(request(fhir_server, kozey), TEMPLATES)).values
    assert list(gathered) == list(TEMPLATES)
    assert gathered["patient"] is not None and gathered["patient"]["id"] == kozey
    assert ids(gathered["conditions"]) == expected_ids(fhir_server, "Condition", kozey) != []
    codes = {f"{LOINC}|39156-5", f"{LOINC}|29463-7", f"{LOINC}|8302-2"}
    observations = ids(gathered["observations"])
    assert observations == expected_ids(fhir_server, "Observation", kozey, codes)
    assert 0 < len(observations) < len(fhir_server.data.search("Observation", kozey))
    assert gathered["familyHistory"] == {"resourceType": "Bundle", "type": "searchset", "total": 0, "link": gathered["familyHistory"]["link"]}


async def test_pages_are_merged_into_one_searchset(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    kozey = fhir_server.data.patient_id("Kozey")
    fhir_server.behave(page_size=2, only_types={"Condition"})
    gathered = (await make_gatherer().gather(request(fhir_server, kozey, prefetch={"patient": None}), TEMPLATES)).values
    conditions = gathered["conditions"]
    assert ids(conditions) == expected_ids(fhir_server, "Condition", kozey)
    assert conditions is not None and conditions["type"] == "searchset" and "link" not in conditions
    pages = [r for r in fhir_server.requests if r.resource_type == "Condition"]
    assert len(pages) == 4  # 7 conditions, 2 a page
    assert [r.params.get("_offset") for r in pages] == [None, ["2"], ["4"], ["6"]]


async def test_a_paginated_prefetch_bundle_is_completed_from_the_server(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    kozey = fhir_server.data.patient_id("Kozey")
    conditions = fhir_server.data.search("Condition", kozey)
    first_page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{fhir_server.base_url}/Condition?patient={kozey}&_count=3&_offset=2"}],
        "entry": [{"resource": resource} for resource in conditions[:2]],
    }
    prefetch = {"patient": {"resourceType": "Patient", "id": kozey}, "conditions": first_page, "observations": None, "familyHistory": None}
    gathered = (await make_gatherer().gather(request(fhir_server, kozey, prefetch=prefetch), TEMPLATES)).values
    assert ids(gathered["conditions"]) == sorted(r["id"] for r in conditions)
    assert [r.params["_offset"] for r in fhir_server.requests] == [["2"], ["5"]]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in fhir_server.requests)


async def test_a_read_answered_404_is_no_data(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    gathered = (await make_gatherer().gather(request(fhir_server, "no-such-patient"), TEMPLATES)).values
    assert gathered["patient"] is None
    assert ids(gathered["conditions"]) == []


async def test_a_search_answered_404_is_unobtainable(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    templates = {"things": "NoSuchType/x/y?patient={{context.patientId}}"}
    with pytest.raises(PrefetchUnavailable, match="prefetch key 'things' is missing and the FHIR server answered 404"):
        await make_gatherer().gather(request(fhir_server, "example"), templates)


async def test_the_page_limit_ends_in_412_not_in_silently_partial_data(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    fhir_server.behave(page_size=2, only_types={"Condition"})
    with pytest.raises(PrefetchUnavailable, match=r"'conditions' is missing and the FHIR server has more than CDS_FHIR_PAGE_LIMIT=3 pages"):
        await make_gatherer(page_limit=3).gather(request(fhir_server, fhir_server.data.patient_id("Kozey")), TEMPLATES)
    assert len([r for r in fhir_server.requests if r.resource_type == "Condition"]) == 3


async def test_a_server_that_paginates_forever_is_stopped_at_the_page_limit(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    fhir_server.behave(page_size=50, paginate_forever=True)
    with pytest.raises(PrefetchUnavailable, match="more than CDS_FHIR_PAGE_LIMIT=5 pages"):
        await make_gatherer(page_limit=5).gather(request(fhir_server, "example", prefetch={"patient": None}), TEMPLATES)
    per_type = {kind: len([r for r in fhir_server.requests if r.resource_type == kind]) for kind in ("Condition", "Observation")}
    assert max(per_type.values()) == 5


async def test_pages_held_until_merged_count_against_one_byte_limit_for_the_call(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    """Each page fits, all of them together do not: no more than a request body could have brought
    (before, 3 keys x 10 pages x 5 MiB could be held at once)."""
    fhir_server.behave(page_size=1, paginate_forever=True, only_types={"Condition"})
    with pytest.raises(PrefetchUnavailable, match="answers for this call are larger than 20000 bytes"):
        await make_gatherer(page_limit=1000, max_bytes=20_000).gather(
            request(fhir_server, "example", prefetch={"patient": None, "observations": None, "familyHistory": None}), TEMPLATES
        )
    assert 5 < len(fhir_server.requests) < 1000


async def test_an_answer_nested_deeper_than_a_request_may_be_is_refused(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    deep = b'{"resourceType": "Bundle", "type": "searchset", "meta": ' + b"[" * 80 + b"]" * 80 + b"}"
    fhir_server.behave(answer=(deep, {}), only_types={"Condition"})
    with pytest.raises(PrefetchUnavailable, match="answered with JSON nested deeper than 64 levels"):
        await make_gatherer().gather(request(fhir_server, "example", prefetch={"patient": None, "observations": None, "familyHistory": None}), TEMPLATES)


async def test_fetched_resources_count_against_the_prefetch_limit(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    with pytest.raises(PrefetchUnavailable, match="more resources than CDS_MAX_PREFETCH_RESOURCES=5"):
        await make_gatherer(max_resources=5).gather(request(fhir_server, fhir_server.data.patient_id("Kozey")), TEMPLATES)


async def test_a_prefetch_over_the_resource_limit_is_refused_before_any_fetch(
    fhir_server: FhirTestServer, make_gatherer: GathererFactory
) -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Condition", "id": str(i)}} for i in range(6)]}
    with pytest.raises(PayloadTooLarge, match="holds 6 resources, more than the limit of 5"):
        await make_gatherer(max_resources=5).gather(request(fhir_server, "example", prefetch={"conditions": bundle}), TEMPLATES)
    assert fhir_server.requests == []


async def test_an_oversized_page_is_refused(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    with pytest.raises(PrefetchUnavailable, match="the FHIR server's answers for this call are larger than 2048 bytes"):
        await make_gatherer(max_bytes=2048).gather(request(fhir_server, fhir_server.data.patient_id("Kozey")), TEMPLATES)


async def test_complete_prefetch_never_contacts_the_server(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    prefetch = {key: None for key in TEMPLATES}
    assert await make_gatherer().gather(request(fhir_server, "example", prefetch=prefetch), TEMPLATES) == Gathered(prefetch, 0)
    assert fhir_server.requests == []


async def test_the_resources_a_call_brought_are_counted_sent_and_fetched(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    """The count decides whether the call's facts are computed off the event loop (routes.py)."""
    kozey = fhir_server.data.patient_id("Kozey")
    conditions = fhir_server.data.search("Condition", kozey)
    sent = {
        "patient": {"resourceType": "Patient", "id": kozey},
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in conditions]},
        "familyHistory": None,
        "undeclared": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in conditions[:2]]},
    }
    complete = await make_gatherer().gather(request(fhir_server, kozey, prefetch={**sent, "observations": None}), TEMPLATES)
    assert complete.resources == 1 + len(conditions) + 2 and fhir_server.requests == []
    completed = await make_gatherer().gather(request(fhir_server, kozey, prefetch=sent), TEMPLATES)
    observations = completed.values["observations"]["entry"]
    assert observations and completed.resources == complete.resources + len(observations)


async def test_fetch_outcomes_are_counted(fhir_server: FhirTestServer, make_gatherer: GathererFactory) -> None:
    metrics = Metrics()
    gatherer = make_gatherer(metrics=metrics)
    await gatherer.gather(request(fhir_server, "example"), TEMPLATES)
    fhir_server.behave(status=500, only_types={"Patient"})
    with pytest.raises(PrefetchUnavailable):
        await gatherer.gather(request(fhir_server, "example", prefetch={"conditions": None, "observations": None, "familyHistory": None}), TEMPLATES)

    def count(outcome: str) -> float:
        return metrics.registry.get_sample_value("cds_fhir_fetches_total", {"outcome": outcome}) or 0.0

    assert (count("ok"), count("error"), count("timeout")) == (4.0, 1.0, 0.0)
