"""Where the project's shared material is (spec, reference, FHIR fixtures), for the tests, the
benchmark and the robustness runs, which read it in place.

In order: ``BACK_KNEE_SHARED_DIR`` when set; ``../shared`` beside the checkout, as on the team's
machines and in CI; for a clone of a local checkout (``git clone /path/to/checkout elsewhere``),
the ``shared`` beside the checkout it was cloned from. The first that applies is the answer, even
when it does not exist, so a caller can say where it looked.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["ENV_VAR", "REPO_ROOT", "locate_shared_dir"]

ENV_VAR = "BACK_KNEE_SHARED_DIR"
REPO_ROOT = Path(__file__).resolve().parent


def locate_shared_dir(repo_root: Path = REPO_ROOT) -> Path:
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named)
    beside = repo_root.parent / "shared"
    if beside.is_dir():
        return beside
    origin = _local_origin(repo_root)
    if origin is not None and (origin.parent / "shared").is_dir():
        return origin.parent / "shared"
    return beside


def _local_origin(repo_root: Path) -> Path | None:
    """The checkout ``repo_root`` was cloned from, when that is a directory on this machine."""
    try:
        url = subprocess.run(
            ["git", "-C", str(repo_root), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if url.startswith("file://"):
        url = url[len("file://") :]
    if not url or "://" in url:
        return None
    path = Path(url)
    return path.resolve() if path.is_absolute() and path.is_dir() else None
