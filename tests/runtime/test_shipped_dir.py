"""service.shipped: rules/ and migrations/ from a wheel's bundled copy, else from the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import DEFAULT_RULES_DIR
from service.shipped import BUNDLED, shipped_dir
from service.store.migrate import MIGRATIONS_DIR
from tests.conftest import REPO_ROOT


def test_a_checkout_reads_its_own_rules_and_migrations() -> None:
    assert (DEFAULT_RULES_DIR, MIGRATIONS_DIR) == (REPO_ROOT / "rules", REPO_ROOT / "migrations")


@pytest.mark.parametrize("name", ["rules", "migrations"])
def test_an_installed_package_reads_its_bundled_copy_not_what_lies_beside_it(tmp_path: Path, name: str) -> None:
    """In site-packages, a ``rules`` beside the package would be another project's."""
    package = tmp_path / "site-packages" / "service"
    (package / BUNDLED / name).mkdir(parents=True)
    (tmp_path / "site-packages" / name).mkdir()
    assert shipped_dir(name, package=package) == package / BUNDLED / name


def test_without_a_bundled_copy_the_checkout_beside_the_package_is_read(tmp_path: Path) -> None:
    assert shipped_dir("rules", package=tmp_path / "service") == tmp_path / "rules"
