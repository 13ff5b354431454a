"""The benchmark bodies are real fixture data, shaped as the service's prefetch asks, and valid R4."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.workloads import BODY_WEIGHT_HEIGHT_BMI_CODES, build_workloads, family_history, heavy, sweep, typical
from service.cdshooks.models import HookRequest
from tests.conftest import SHARED_FIXTURES
from tests.support.shared import SHARED_SPEC

CLINICAL_RULES = (SHARED_SPEC / "clinical-rules.md").read_text(encoding="utf-8")


def _prefetch(body: bytes) -> dict[str, Any]:
    request = HookRequest.model_validate(orjson.loads(body))
    assert request.hook == "patient-view"
    assert request.prefetch is not None
    assert set(request.prefetch) == {"patient", "conditions", "observations", "familyHistory"}
    return request.prefetch


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == len(bundle["entry"])
    return [entry["resource"] for entry in bundle["entry"]]


def test_typical_is_one_patients_prefetch_and_valid_r4() -> None:
    workload = typical(SHARED_FIXTURES)
    prefetch = _prefetch(workload.body)
    conditions = _resources(prefetch["conditions"])
    observations = _resources(prefetch["observations"])
    histories = _resources(prefetch["familyHistory"])
    assert (len(conditions), len(observations), len(histories)) == (7, 27, 2)
    assert workload.resources == 36
    for observation in observations:
        codes = {c["code"] for c in observation["code"]["coding"] if c["system"] == "http://loinc.org"}
        assert codes & BODY_WEIGHT_HEIGHT_BMI_CODES
    for resource in [prefetch["patient"], *conditions, *observations, *histories]:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_family_histories_use_catalogued_back_and_knee_codes() -> None:
    histories = family_history(SHARED_FIXTURES, patient_id="p1")
    codes = [h["condition"][0]["code"]["coding"][0]["code"] for h in histories]
    assert codes == ["239873007", "279039007"]
    for code in codes:
        assert code in CLINICAL_RULES
    assert all(h["patient"] == {"reference": "Patient/p1"} for h in histories)


def test_heavy_sends_every_condition_and_observation_unfiltered() -> None:
    workload = heavy(SHARED_FIXTURES)
    prefetch = _prefetch(workload.body)
    observations = _resources(prefetch["observations"])
    assert len(_resources(prefetch["conditions"])) == 11
    assert len(observations) == 328
    loinc = {c["code"] for o in observations for c in o["code"]["coding"]}
    assert loinc - BODY_WEIGHT_HEIGHT_BMI_CODES, "heavy must carry Observations the code filter would drop"


@pytest.mark.parametrize("size", [10, 339, 1000])
def test_sweep_has_exactly_size_resources_with_unique_ids(size: int) -> None:
    workload = sweep(SHARED_FIXTURES, size)
    prefetch = _prefetch(workload.body)
    resources = _resources(prefetch["conditions"]) + _resources(prefetch["observations"])
    assert len(resources) == size == workload.resources
    assert len({(r["resourceType"], r["id"]) for r in resources}) == size
    assert any(r["resourceType"] == "Condition" for r in resources)


def test_workload_names_expand_and_unknown_names_fail() -> None:
    names = [w.name for w in build_workloads(SHARED_FIXTURES, names=["typical", "sweep"], sweep_sizes=[10, 100])]
    assert names == ["typical", "sweep-10", "sweep-100"]
    with pytest.raises(ValueError, match="unknown workload"):
        build_workloads(SHARED_FIXTURES, names=["huge"], sweep_sizes=[])


def test_bodies_are_reproducible() -> None:
    assert sweep(SHARED_FIXTURES, 700).body == sweep(SHARED_FIXTURES, 700).body
