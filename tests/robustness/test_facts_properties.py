"""Properties of the facts layer over arbitrary FHIR JSON (hypothesis).

1. ``compute_facts`` never raises, whatever shape the resources and Bundles have.
2. The facts do not depend on the order the resources come in.
3. A resource listed twice (a duplicated Bundle entry, or the same resource in two prefetch
   keys) counts once: the facts equal those of the data without the duplicate.

Bounded and derandomized (fixed examples per run) so the suite stays fast and repeatable.
"""

from __future__ import annotations

import copy
from datetime import date
from functools import cache
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.fhir import FactDefinitions, PatientFacts, compute_facts, load_fact_definitions
from service.settings import DEFAULT_RULES_DIR
from tests.robustness.fhir_strategies import (
    conditions,
    family_member_histories,
    json_values,
    observations,
    patients,
    plausible_conditions,
    plausible_family_member_histories,
    plausible_observations,
    plausible_patients,
    resource_lists,
    resources,
)

def _bounded(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


_days = st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31))


@cache
def _definitions() -> FactDefinitions:
    return load_fact_definitions(DEFAULT_RULES_DIR)


def _facts(data: list[Any], *, patient_id: str | None, today: date) -> PatientFacts:
    return compute_facts(data, patient_id=patient_id, today=today, definitions=_definitions())


def _searchset(entries: list[Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in entries]}


# What a prefetch's values may look like: bare resources, searchset Bundles of them (nested
# too), and broken Bundles (entry not a list, entries without a resource, anything at all).
_broken_bundles = st.one_of(
    st.fixed_dictionaries({"resourceType": st.just("Bundle"), "entry": json_values}),
    st.fixed_dictionaries({"resourceType": st.just("Bundle"), "entry": st.lists(st.one_of(json_values, st.fixed_dictionaries({"resource": json_values})), max_size=3)}),
    st.fixed_dictionaries({"resourceType": st.just("Bundle"), "type": st.just("searchset"), "entry": st.lists(st.builds(lambda r: {"resource": _searchset([r])}, resources()), max_size=2)}),
)
_prefetch_values = st.lists(
    st.one_of(resources(), resource_lists(max_size=6).map(_searchset), _broken_bundles, json_values),
    max_size=5,
)


@_bounded(300)
# Found by this test: fhir.resources raised AttributeError on a primitive extension that is JSON
# but not an object, and the hook call answered 500.
@example(data=[{"resourceType": "Patient", "id": "p1", "birthDate": "1960", "_birthDate": "0"}], patient_id="p1", today=date(2025, 1, 1))
@given(data=_prefetch_values, patient_id=st.sampled_from(["p1", "p2", None, ""]), today=_days)
def test_compute_facts_never_raises_on_any_json(data: list[Any], patient_id: str | None, today: date) -> None:
    facts = _facts(data, patient_id=patient_id, today=today)
    assert set(facts.facts) == set(_definitions().facts)
    assert all(fact.name == name for name, fact in facts.facts.items())


def _one_patient_and_others(patient: dict[str, Any], others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The patient ``p1`` and resources with distinct ids, as a real record has them."""
    patient = {**patient, "resourceType": "Patient", "id": "p1"}
    renamed = []
    for index, resource in enumerate(others):
        resource = copy.deepcopy(resource)
        if resource.get("resourceType") == "Patient":
            continue
        resource["id"] = f"r{index}"
        renamed.append(resource)
    return [patient, *renamed]


# Mostly plausible resources (so that facts hold and their evidence is compared), some broken.
_records = st.builds(
    _one_patient_and_others,
    st.one_of(plausible_patients(), plausible_patients(), patients()),
    st.lists(
        st.one_of(
            plausible_conditions(), plausible_conditions(), plausible_conditions(), plausible_observations(),
            plausible_observations(), plausible_family_member_histories(), conditions(), observations(), family_member_histories(),
        ),
        min_size=1,
        max_size=12,
    ),
)


def _comparable(facts: PatientFacts) -> tuple[Any, ...]:
    # ``skipped`` lists what was set aside; it is a report, compared as a set.
    return (facts.patient_id, facts.deceased, dict(facts.facts), sorted(set(facts.skipped)))


@_bounded(100)
@given(record=_records, today=_days, order=st.randoms(use_true_random=False), bundled=st.booleans(), patient_id=st.sampled_from(["p1", None]))
def test_facts_do_not_depend_on_resource_order(record: list[dict[str, Any]], today: date, order: Any, bundled: bool, patient_id: str | None) -> None:
    shuffled = record[:]
    order.shuffle(shuffled)
    as_sent = (lambda rs: [_searchset(rs)]) if bundled else (lambda rs: rs)
    first = _facts(as_sent(record), patient_id=patient_id, today=today)
    second = _facts(as_sent(shuffled), patient_id=patient_id, today=today)
    assert _comparable(first) == _comparable(second)


@_bounded(100)
@given(record=_records, today=_days, picks=st.lists(st.integers(min_value=0), max_size=4), split=st.booleans())
def test_duplicated_bundle_entries_count_once(record: list[dict[str, Any]], today: date, picks: list[int], split: bool) -> None:
    duplicates = [copy.deepcopy(record[pick % len(record)]) for pick in picks]
    once = _facts([_searchset(record)], patient_id="p1", today=today)
    if split:  # the same resources again in a second prefetch value
        twice = _facts([_searchset(record), _searchset(duplicates)], patient_id="p1", today=today)
    else:  # duplicated entries inside the one Bundle
        twice = _facts([_searchset(record + duplicates)], patient_id="p1", today=today)
    assert _comparable(once) == _comparable(twice)
