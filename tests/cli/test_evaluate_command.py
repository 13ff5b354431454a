"""``back-knee-cds evaluate`` and ``rules check``: offline, one-line errors, exit code 2 on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.conftest import REPO_ROOT, SHARED_FIXTURES

CHAUNCEY = SHARED_FIXTURES / "synthea-r4-bundles" / "Chauncey_Johnston_f4673866-81fb-411a-8486-0c27f2a5b480.json"
CHAUNCEY_RULES = ["risk-factors", "knee-pain-back-risk", "weight-management", "knee-arthritis-care"]


@pytest.fixture
def chauncey() -> Path:
    if not CHAUNCEY.is_file():
        pytest.skip(f"{CHAUNCEY} is not here (shared fixtures live beside the project)")
    return CHAUNCEY


def _rules(output: str) -> list[str]:
    return [card["source"]["topic"]["code"] for result in json.loads(output)["results"] for card in result["cards"]]


def test_evaluate_bundle_as_json(capsys: pytest.CaptureFixture[str], chauncey: Path) -> None:
    code, out, err = run_cli(capsys, "evaluate", str(chauncey), "--as-of", "2020-06-01", "--format", "json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["as_of"] == "2020-06-01"
    assert [r["service"] for r in document["results"]] == ["back-knee-risk-factors", "back-knee-injury-referral", "back-knee-care-guidance"]
    assert _rules(out) == CHAUNCEY_RULES
    assert len({r["patient"] for r in document["results"]}) == 1


def test_evaluate_one_service(capsys: pytest.CaptureFixture[str], chauncey: Path) -> None:
    code, out, _ = run_cli(capsys, "evaluate", str(chauncey), "--as-of", "2020-06-01", "--format", "json", "--service", "back-knee-care-guidance")
    assert code == 0
    assert _rules(out) == ["weight-management", "knee-arthritis-care"]


def test_evaluate_as_text_reads_like_the_cards(capsys: pytest.CaptureFixture[str], chauncey: Path) -> None:
    code, out, _ = run_cli(capsys, "evaluate", str(chauncey), "--as-of", "2020-06-01")
    assert code == 0
    assert "Evaluated on 2020-06-01" in out
    assert "[INFO] Knee arthritis, excess weight" not in out  # summary phrases come from the rule
    assert "[INFO] Knee arthritis, BMI 27.9:" in out
    assert "Osteoarthritis of knee" in out and "Condition/" in out
    assert "Refer for physical therapy [recommended]" in out
    assert "More: http://127.0.0.1:8080/rules/knee-arthritis-care" in out
    assert "\\(" not in out and "**" not in out  # markdown escapes and emphasis removed
    assert "(no cards)" in out  # the injury-referral service has nothing for this patient


def test_evaluate_a_cds_hooks_request_uses_its_prefetch_and_patient(
    capsys: pytest.CaptureFixture[str], chauncey: Path, tmp_path: Path
) -> None:
    bundle = json.loads(chauncey.read_text(encoding="utf-8"))
    resources = [entry["resource"] for entry in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    request = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": patient["id"], "userId": "Practitioner/1"},
        "prefetch": {
            "patient": patient,
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": c} for c in conditions]},
            "observations": None,
            "familyHistory": None,
        },
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    code, out, _ = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01", "--format", "json")
    assert code == 0
    assert {r["patient"] for r in json.loads(out)["results"]} == {patient["id"]}
    # No Observations in this request, so no BMI: the active obesity diagnosis counts instead.
    assert _rules(out) == CHAUNCEY_RULES
    summaries = [card["summary"] for result in json.loads(out)["results"] for card in result["cards"]]
    assert "Overweight or obesity diagnosis, knee problem: weight loss" in summaries[2]


@pytest.mark.parametrize("conditions", [None, {"resourceType": "OperationOutcome", "issue": []}], ids=["missing", "operation-outcome"])
def test_a_request_the_service_would_refuse_is_not_reported_as_no_cards(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, conditions: dict[str, object] | None
) -> None:
    """The service answers 412 for prefetch it would have to fetch; offline, '(no cards)' read as an all-clear."""
    prefetch: dict[str, object] = {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}, "observations": None, "familyHistory": None}
    if conditions is not None:
        prefetch["conditions"] = conditions
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"hook": "patient-view", "hookInstance": "h1", "context": {"patientId": "p1"}, "prefetch": prefetch}), encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", str(path), "--service", "back-knee-injury-referral", "--as-of", "2020-06-01")
    assert code == 2
    assert err == f"error: {path}: prefetch key 'conditions' is missing or holds an OperationOutcome; the service would answer 412 (offline, nothing is fetched from a FHIR server)\n"
    code, out, _ = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01", "--format", "json")
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 3 and all(result["not_evaluated"].endswith("the service would answer 412 (offline, nothing is fetched from a FHIR server)") for result in results)
    assert not any("cards" in result for result in results)


@pytest.mark.parametrize(("value", "got"), [("Patient/p1", "a string"), ({"id": "p1"}, "an object without resourceType")])
def test_a_prefetch_value_the_service_answers_400_is_an_error_here_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: object, got: str
) -> None:
    """Before: a string prefetch value was reported as 'missing ... the service would answer 412'."""
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"hook": "patient-view", "hookInstance": "h1", "context": {"patientId": "p1"}, "prefetch": {"patient": value}}))
    code, _, err = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01")
    assert code == 2
    assert err == (  # the service's own 400 message
        f"error: {path}: prefetch: prefetch key 'patient' must be a FHIR resource (a JSON object with resourceType) or null, "
        f"got {got} (the service would answer 400)\n"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Before: a falsy prefetch that is not an object was no prefetch, and read as "412".
        ({"prefetch": []}, "prefetch: Input should be a valid dictionary"),
        ({"prefetch": 0}, "prefetch: Input should be a valid dictionary"),
        # Before: evaluated, with cards.
        ({"hookInstance": None}, "hookInstance: Input should be a valid string"),
        ({"hook": ""}, "hook: String should have at least 1 character"),
    ],
)
def test_a_request_the_service_answers_400_is_an_error_here_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, change: dict[str, object], message: str
) -> None:
    request = {"hook": "patient-view", "hookInstance": "h1", "context": {"patientId": "p1"}, "prefetch": {"patient": None}}
    path = tmp_path / "request.json"
    path.write_text(json.dumps({**request, **change}))
    code, _, err = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01")
    assert code == 2
    assert err == f"error: {path}: {message} (the service would answer 400)\n"


def test_a_hook_the_service_does_not_serve_is_not_evaluated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Before: evaluated as if it were patient-view; the service answers 400."""
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}, "conditions": None, "observations": None, "familyHistory": None}
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"hook": "order-select", "hookInstance": "h1", "context": {"patientId": "p1"}, "prefetch": prefetch}))
    def refusal(service: str) -> str:
        return f"{path}: service '{service}' does not serve hook 'order-select'; it serves patient-view (the service would answer 400)"

    code, _, err = run_cli(capsys, "evaluate", str(path), "--service", "back-knee-risk-factors", "--as-of", "2020-06-01")
    assert code == 2 and err == f"error: {refusal('back-knee-risk-factors')}\n"
    code, out, _ = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01", "--format", "json")
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 3 and all(result["not_evaluated"] == refusal(result["service"]) for result in results)


def test_only_the_patient_whose_request_lacks_prefetch_is_not_evaluated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def request(patient_id: str, *, conditions: bool) -> Path:
        prefetch: dict[str, object] = {
            "patient": {"resourceType": "Patient", "id": patient_id, "birthDate": "1950-01-01"}, "observations": None, "familyHistory": None,
        }
        if conditions:
            prefetch["conditions"] = None
        path = tmp_path / f"{patient_id}.json"
        path.write_text(json.dumps({"hook": "patient-view", "hookInstance": patient_id, "context": {"patientId": patient_id}, "prefetch": prefetch}))
        return path

    complete, lacking = request("pA", conditions=True), request("pB", conditions=False)
    code, out, _ = run_cli(capsys, "evaluate", str(complete), str(lacking), "--service", "back-knee-risk-factors", "--as-of", "2020-06-01", "--format", "json")
    assert code == 0
    results = {result["patient"]: result for result in json.loads(out)["results"]}
    assert "cards" in results["pA"] and "not_evaluated" not in results["pA"]
    assert results["pB"]["not_evaluated"].startswith(f"{lacking}: prefetch key 'conditions' is missing")


def test_evaluate_ndjson(capsys: pytest.CaptureFixture[str], chauncey: Path, tmp_path: Path) -> None:
    bundle = json.loads(chauncey.read_text(encoding="utf-8"))
    path = tmp_path / "patient.ndjson"
    path.write_text("\n".join(json.dumps(entry["resource"]) for entry in bundle["entry"]) + "\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01", "--format", "json")
    assert code == 0
    assert _rules(out) == CHAUNCEY_RULES


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        ("", "file is empty"),
        ("{not json", "not valid JSON"),
        ('[{"resourceType": "Patient"}]', "expected a JSON object"),
        ('{"name": "x"}', "not a FHIR resource (no resourceType) and not a CDS Hooks request"),
        ('{"resourceType": "Patient", "id": "a"}\n{"resourceType": \n', "line 2: not valid JSON"),
        ('{"resourceType": "Patient", "id": "a"}\n[1]\n', "line 2: not a FHIR resource"),
        ('{"hook": "patient-view", "hookInstance": "h1", "context": {}}', "context.patientId is required and must be a non-empty string"),
    ],
    ids=["missing", "empty", "bad-json", "array", "no-resource-type", "bad-ndjson-line", "ndjson-not-resource", "hook-no-patient"],
)
def test_bad_input_is_one_line_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run_cli(capsys, "evaluate", str(path), "--as-of", "2020-06-01")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: ") and expected in err
    assert err.count("\n") == 1


def test_directory_as_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert code == 2 and err.startswith(f"error: {tmp_path}: is a directory")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--as-of", "01/06/2020"], "error: --as-of: expected a date as YYYY-MM-DD, got '01/06/2020'"),
        (["--service", "nope"], "error: --service: unknown service 'nope'"),
        # Before year 3 the facts' two-year look-back left the calendar (OverflowError traceback).
        (["--as-of", "0001-01-01"], "error: --as-of: 0001-01-01 is before 1900-01-01"),
    ],
)
def test_bad_options(capsys: pytest.CaptureFixture[str], chauncey: Path, argv: list[str], expected: str) -> None:
    code, _, err = run_cli(capsys, "evaluate", str(chauncey), *argv)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1


def test_the_last_date_there_is_can_be_today(capsys: pytest.CaptureFixture[str], chauncey: Path) -> None:
    """No fact counts a day past 'today' (an earlier draft of the east-of-UTC allowance overflowed)."""
    code, out, err = run_cli(capsys, "evaluate", str(chauncey), "--as-of", "9999-12-31")
    assert (code, err) == (0, "") and out


def test_rules_check_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "rules", "check", str(REPO_ROOT / "rules"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "catalogue 1.0.4: 9 rules, 3 services" in lines[0]
    assert "risk-factors 1.0.2 back-knee-risk-factors" in lines
    assert "post-injury-back-pain 1.0.1 back-knee-injury-referral" in lines
    assert "knee-arthritis-care 1.0.2 back-knee-care-guidance" in lines
    assert len(lines) == 10


def test_rules_check_default_directory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "rules", "check")
    assert code == 0 and "9 rules" in out


def test_rules_check_broken_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "rules", broken)
    rule = broken / "rules" / "sciatica-guidance.yaml"
    rule.write_text(rule.read_text(encoding="utf-8").replace("condition: sciatica", "condition: sciatic"), encoding="utf-8")
    code, out, err = run_cli(capsys, "rules", "check", str(broken))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {rule}: rule 'sciatica-guidance': field 'condition': unknown fact 'sciatic'")
    assert err.count("\n") == 1


def test_rules_check_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "rules", "check", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith(f"error: {tmp_path / 'nowhere'}: rules directory not found")


def test_a_reader_that_goes_away_ends_it_quietly(chauncey: Path) -> None:
    """`evaluate ... | head`: no BrokenPipeError traceback once the pipe is closed."""
    with subprocess.Popen(
        [sys.executable, "-m", "service", "evaluate", str(chauncey), "--as-of", "2020-06-01"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process:  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before it writes anything: every write meets a closed pipe
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1
    assert err == ""
