"""Without the shared spec and fixtures the suite stops at once and says where it looked.

Many tests read ``../shared`` in place; a clone elsewhere used to fail with a FileNotFoundError
while collecting one module. BACK_KNEE_SHARED_DIR names the directory instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.support.shared import SHARED_DIR


def _pytest(shared_dir: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACK_KNEE_SHARED_DIR": shared_dir}
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
