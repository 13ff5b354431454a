"""Where the tests find the project's shared material: spec, reference and FHIR fixtures.

Found by ``shared_dir.locate_shared_dir`` (beside the checkout, or named by ``BACK_KNEE_SHARED_DIR``,
or beside the checkout a local clone came from). Tests read it in place (the brief's rule: real
fixture data, with its provenance), so without it the suite cannot run, and says so.
"""

from __future__ import annotations

from shared_dir import locate_shared_dir

__all__ = ["SHARED_DIR", "SHARED_FIXTURES", "SHARED_REFERENCE", "SHARED_SPEC", "missing_shared_dir"]

SHARED_DIR = locate_shared_dir()
SHARED_FIXTURES = SHARED_DIR / "fixtures" / "fhir"
SHARED_REFERENCE = SHARED_DIR / "reference"
SHARED_SPEC = SHARED_DIR / "spec"


def missing_shared_dir() -> str | None:
    """Why the shared material cannot be used, or None when it is there."""
    if SHARED_FIXTURES.is_dir() and SHARED_SPEC.is_dir() and SHARED_REFERENCE.is_dir():
        return None
    return (
        f"the shared material (spec/, reference/, fixtures/fhir/) is not at {SHARED_DIR}: "
        "keep the checkout beside ../shared, or set BACK_KNEE_SHARED_DIR to where it is"
    )
