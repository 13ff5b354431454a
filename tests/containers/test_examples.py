"""The README's example request is the Synthea patient it claims to be, with the prefetch the service declares."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import REPO_ROOT, SHARED_FIXTURES
from tests.support.examples import EXAMPLES, example

SOURCE_BUNDLE = SHARED_FIXTURES / "synthea-r4-bundles" / "Chauncey_Johnston_f4673866-81fb-411a-8486-0c27f2a5b480.json"
SERVICE_ID = "back-knee-risk-factors"


def _generator() -> ModuleType:
    path = REPO_ROOT / "scripts" / "make_example_request.py"
    spec = importlib.util.spec_from_file_location("make_example_request", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_request_is_regenerated_byte_for_byte_from_its_fixture(tmp_path: Path) -> None:
    if not SOURCE_BUNDLE.is_file():
        pytest.skip(f"shared fixture not found: {SOURCE_BUNDLE}")
    out = tmp_path / "request.json"
    assert _generator().main([str(SOURCE_BUNDLE), "--out", str(out)]) == 0
    assert out.read_bytes() == (EXAMPLES / "patient-view-request.json").read_bytes(), (
        "examples/patient-view-request.json differs from what scripts/make_example_request.py makes; "
        "rerun it (see examples/README.md)"
    )


def test_request_fills_exactly_the_prefetch_keys_the_service_declares() -> None:
    services = yaml.safe_load((REPO_ROOT / "rules" / "services.yaml").read_text(encoding="utf-8"))["services"]
    declared = next(service for service in services if service["id"] == SERVICE_ID)["prefetch"]
    request = example("patient-view-request.json")
    assert set(request["prefetch"]) == set(declared)
    patient_id = request["context"]["patientId"]
    assert request["prefetch"]["patient"]["id"] == patient_id
    for key, value in request["prefetch"].items():
        if value["resourceType"] != "Bundle":
            continue
        for entry in value["entry"]:
            assert entry["resource"]["subject"]["reference"] == f"Patient/{patient_id}", key
