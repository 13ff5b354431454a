"""CDS_AUTH=off (what ``make run`` uses): no JWT needed, and a loud warning on every start."""

from __future__ import annotations

import io
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cdshooks.security import AUTH_OFF_WARNING
from service.logs import configure_logging
from tests.cdshooks.requests import EMPTY_PREFETCH, hook_request
from tests.conftest import REPO_ROOT, SettingsFactory


def test_every_start_with_auth_off_warns(make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings(auth="off"))
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            with TestClient(app, base_url="http://testserver") as client:
                assert client.get("/cds-services").status_code == 200
                body = hook_request(prefetch=EMPTY_PREFETCH)
                assert client.post("/cds-services/back-knee-risk-factors", json=body).status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage() == AUTH_OFF_WARNING]
    assert len(warnings) == 2
    assert AUTH_OFF_WARNING.startswith("AUTHENTICATION IS OFF (CDS_AUTH=off)")


@pytest.mark.parametrize("level", ["ERROR", "CRITICAL"])
def test_no_log_level_hides_the_warning(make_settings: SettingsFactory, restore_logging: None, level: str) -> None:
    stream = io.StringIO()
    configure_logging("json", level, stream=stream)
    with TestClient(create_app(make_settings(auth="off")), base_url="http://testserver") as client:
        client.get("/health/live")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line["event"]) for line in lines] == [("warning", AUTH_OFF_WARNING)]


def test_auth_on_does_not_warn_about_auth_off(make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), TestClient(create_app(make_settings(auth="jwt"))):
        pass
    assert AUTH_OFF_WARNING not in caplog.text


def test_make_run_serves_with_auth_off_unless_told_otherwise() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(["make", "-n", "run"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, env={**os.environ, "CDS_AUTH": ""})
    serve = [line for line in plan.stdout.splitlines() if "back-knee-cds serve" in line]
    assert serve and all("CDS_AUTH=${CDS_AUTH:-off}" in line for line in serve), plan.stdout


def test_the_serve_command_prints_the_warning_as_a_json_log_line(tmp_path: Path) -> None:
    """What a developer sees after ``make run``: the warning on stderr, before the server answers."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_AUTH": "off",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CDS_PATIENT_KEY": "serve-test-patient-key-0123456789",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", "0"],
        cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline, seen = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line)
            if AUTH_OFF_WARNING in line:
                entry = orjson.loads(line)
                assert entry["level"] == "warning"
                assert entry["setting"] == "CDS_AUTH"
                return
        pytest.fail(f"no auth-off warning on stderr; got: {''.join(seen)[-2000:]}")
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=5)
        process.stderr.close()
