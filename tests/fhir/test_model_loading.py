"""``load_models`` loads at start every R4B class that validation reaches, so no hook call imports one.

``fhir.resources`` imports a nested datatype's module the first time a field of that type is
validated; the first hook call after start used to pay for 11 of them. Each check runs in a fresh
interpreter, where nothing is imported yet, over the real fixture patients and over resources
written here with every choice type the facts read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT, SHARED_FIXTURES
from tests.fhir.builders import PATIENT_ID, TODAY, condition, family_history, patient, searchset, weight

FIXTURE_FILES = [
    *sorted((SHARED_FIXTURES / "synthea-r4-bundles").glob("*.json")),
    *sorted((SHARED_FIXTURES / "hl7-r4-examples").glob("*.json")),
]


def _without(resource: dict[str, Any], *names: str, **fields: Any) -> dict[str, Any]:
    """``resource`` with the elements ``names`` left out and ``fields`` added."""
    return {key: value for key, value in resource.items() if key not in names} | fields


def _member_with(**condition_fields: Any) -> dict[str, Any]:
    member = family_history("239873007")
    member["condition"][0].update(condition_fields)
    return member


# Every choice type of every choice element validation sees, and the datatypes inside them. (An
# Observation valued otherwise than by a Quantity is not a measurement, so it is never validated.)
QUANTITY = {"value": 3, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
EVERY_CHOICE = searchset(
    patient(deceasedDateTime="2024-01-01"),
    condition("239873007", onset=None, onsetAge=QUANTITY, abatementRange={"low": QUANTITY}),
    condition("239873007", onset=None, onsetPeriod={"start": "2020-01-01"}, abatementPeriod={"start": "2021-01-01"}),
    condition("239873007", onset=None, onsetRange={"low": QUANTITY}, abatementAge=QUANTITY),
    condition("239873007", onset=None, onsetString="childhood", abatementString="2020", recordedDate="2020-01-01"),
    _without(weight(80, "2024-01-01"), "effectiveDateTime", effectivePeriod={"start": "2024-01-01"}),
    # The newest and the lowest weight: the weight-gain fact validates those two.
    _without(weight(83, "2024-01-05"), "effectiveDateTime", effectiveTiming={"repeat": {"boundsDuration": QUANTITY}}, issued="2024-01-05T10:00:00Z"),
    _without(weight(82, "2024-01-03"), "effectiveDateTime", effectiveInstant="2024-01-03T10:00:00Z"),
    _member_with(onsetAge=QUANTITY, note=[{"text": "seen by the family doctor"}]),
)

_SCRIPT = """
import json, sys
from datetime import date
from pathlib import Path
from service.fhir import compute_facts, load_fact_definitions, load_models

definitions = load_fact_definitions(Path(sys.argv[1]))
if sys.argv[2] == "load":
    load_models()
before = set(sys.modules)
for data in [json.loads(Path(path).read_text()) for path in sys.argv[4:]] + [json.loads(sys.argv[3])]:
    compute_facts([data], patient_id=None, today=date(2024, 6, 15), definitions=definitions)
print(json.dumps(sorted(name for name in set(sys.modules) - before if name.startswith("fhir"))))
"""


def _imported_while_validating(*, load_first: bool) -> list[str]:
    """The fhir.resources modules a fresh interpreter imports while computing facts over the data."""
    command = [
        sys.executable, "-c", _SCRIPT, str(REPO_ROOT / "rules"), "load" if load_first else "no",
        json.dumps(EVERY_CHOICE), *map(str, FIXTURE_FILES),
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    imported: list[str] = json.loads(completed.stdout)
    return imported


def test_the_data_reaches_the_choice_types_it_was_written_for() -> None:
    """The resources above are valid and relevant: else they would not exercise the classes they name."""
    from service.fhir import compute_facts, load_fact_definitions

    facts = compute_facts([EVERY_CHOICE], patient_id=PATIENT_ID, today=TODAY, definitions=load_fact_definitions(REPO_ROOT / "rules"))
    assert facts.skipped == ()


def test_without_loading_first_validation_imports_datatypes() -> None:
    """The control: the lazy imports this module is about are real (else the next test proves nothing)."""
    imported = _imported_while_validating(load_first=False)
    datatypes = {"codeableconcept", "coding", "reference", "quantity", "age", "range", "period", "timing", "annotation"}
    assert {f"fhir.resources.R4B.{name}" for name in datatypes} <= set(imported)


def test_after_load_models_validation_imports_nothing() -> None:
    assert _imported_while_validating(load_first=True) == []


def test_the_app_loads_them_before_it_serves(tmp_path: Path) -> None:
    script = """
import asyncio, sys
from service.app import create_app
from service.settings import Settings

app = create_app(Settings(_env_file=None, database_url=sys.argv[1], auth="off", patient_key="k" * 32, log_format="text"))
before = "fhir.resources.R4B.codeableconcept" in sys.modules

async def start() -> None:
    async with app.router.lifespan_context(app):
        print(before, "fhir.resources.R4B.codeableconcept" in sys.modules)

asyncio.run(start())
"""
    database = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    completed = subprocess.run(
        [sys.executable, "-c", script, database], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "True"]
