"""Every kept benchmark run is described in bench/results/README.md: a JSON and a plot nobody can
place (which machine, which commit, why it was run) cannot be compared with anything."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# Written by every run and not kept as a record (latest is the newest make bench; the others are ignored by git).
NOT_RECORDS = {"latest", "smoke"}


def _kept_runs() -> set[str]:
    return {
        path.stem
        for path in RESULTS.iterdir()
        if path.suffix in {".json", ".png"} and path.stem not in NOT_RECORDS and not path.stem.startswith("profile-")
    }


def _described_runs(readme: str) -> set[str]:
    """Names in the table's first column: `name.*`, or several of them separated by commas."""
    names: set[str] = set()
    for line in readme.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([^`]+)\.\*`", first_cell))
    return names


def test_every_kept_run_has_a_row_in_the_results_readme() -> None:
    undescribed = _kept_runs() - _described_runs((RESULTS / "README.md").read_text(encoding="utf-8"))
    assert not undescribed, f"bench/results/README.md has no row for {sorted(undescribed)}"


def test_every_row_names_files_that_exist() -> None:
    missing = _described_runs((RESULTS / "README.md").read_text(encoding="utf-8")) - _kept_runs() - NOT_RECORDS
    assert not missing, f"bench/results/README.md describes runs whose files are gone: {sorted(missing)}"
