"""The room table of architecture.md, enforced by imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SERVICE = REPO_ROOT / "service"

# Which top-level libraries each part of the service may import.
WEB = ("fastapi", "starlette")
DATABASE = ("sqlmodel", "sqlalchemy", "alembic")
RULES = {
    WEB: ("service/cdshooks/", "service/api/", "service/app.py", "service/state.py", "service/json_response.py"),
    DATABASE: ("service/store/",),
    ("fhir",): ("service/fhir/", "service/cards.py"),
    ("httpx",): ("service/cdshooks/", "service/app.py", "service/state.py"),
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(SERVICE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_module_imports_only_what_its_room_may(path: Path) -> None:
    relative = str(path.relative_to(REPO_ROOT))
    roots = _imported_roots(path)
    for libraries, allowed in RULES.items():
        used = roots & set(libraries)
        if used:
            assert relative.startswith(allowed), f"{relative} imports {sorted(used)}; only {allowed} may"
