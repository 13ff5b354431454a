"""Without the shared spec and fixtures the suite stops at once and says where it looked.

Many tests read ``../shared`` in place; a clone elsewhere used to fail with a FileNotFoundError
while collecting one module. BACK_KNEE_SHARED_DIR names the directory instead, and a clone of a
local checkout finds the one beside the checkout it was cloned from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_dir import ENV_VAR, locate_shared_dir
from tests.conftest import REPO_ROOT
from tests.support.shared import SHARED_DIR


def _pytest(shared_dir: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV_VAR: shared_dir}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "tests/rules/test_content.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_a_missing_shared_dir_stops_the_suite_with_its_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-shared-here")
    completed = _pytest(missing)
    assert completed.returncode == 4, completed.stdout + completed.stderr
    assert f"is not at {missing}" in completed.stderr and "BACK_KNEE_SHARED_DIR" in completed.stderr


def test_the_shared_dir_can_be_named() -> None:
    completed = _pytest(str(SHARED_DIR))
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True, timeout=60)


def test_a_clone_of_a_local_checkout_finds_the_shared_dir_beside_its_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # git clone . "$(mktemp -d)/c" && make test: no ../shared there, but beside the checkout cloned from.
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "team" / "shared").mkdir(parents=True)
    _git("init", "-q", str(tmp_path / "team" / "checkout"))
    _git("clone", "-q", str(tmp_path / "team" / "checkout"), str(tmp_path / "elsewhere" / "c"))
    assert locate_shared_dir(tmp_path / "elsewhere" / "c") == tmp_path / "team" / "shared"


def test_beside_the_checkout_comes_before_the_origin_and_the_named_dir_before_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "team" / "shared").mkdir(parents=True)
    _git("init", "-q", str(tmp_path / "team" / "checkout"))
    _git("clone", "-q", str(tmp_path / "team" / "checkout"), str(tmp_path / "elsewhere" / "c"))
    (tmp_path / "elsewhere" / "shared").mkdir()
    assert locate_shared_dir(tmp_path / "elsewhere" / "c") == tmp_path / "elsewhere" / "shared"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "named"))
    assert locate_shared_dir(tmp_path / "elsewhere" / "c") == tmp_path / "named"


def test_without_any_the_answer_is_beside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    _git("init", "-q", str(tmp_path / "c"))
    _git("-C", str(tmp_path / "c"), "remote", "add", "origin", "https://example.org/back-knee-cds.git")
    assert locate_shared_dir(tmp_path / "c") == tmp_path / "shared"
