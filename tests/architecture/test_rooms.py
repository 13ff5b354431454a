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


# Which of the service's own modules each room may import (architecture.md: "each room knows only
# the one before it"). The facts know no rules, the engine no HTTP or SQL, the store nothing of the
# rest, the cards only the findings, the facts and the CDS Hooks card model they fill.
SHARED = ("service.catalogue_error",)
OWN_IMPORTS = {
    "service/fhir/": ("service.fhir", *SHARED),
    "service/engine/": ("service.engine", "service.fhir", *SHARED),
    "service/store/": ("service.store", "service.shipped"),  # shipped: where migrations/ is, a leaf
    "service/cards.py": ("service.engine", "service.fhir", "service.cdshooks.models"),
}


def _imported_service_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.split(".")[0] == "service")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "service":
            modules.add(node.module)
    return modules


def _in_room(room: str) -> list[Path]:
    return [SERVICE.parent / room] if room.endswith(".py") else sorted((SERVICE.parent / room).rglob("*.py"))


@pytest.mark.parametrize(
    ("room", "path"),
    [(room, path) for room in OWN_IMPORTS for path in _in_room(room)],
    ids=lambda value: value if isinstance(value, str) else str(value.relative_to(REPO_ROOT)),
)
def test_a_room_imports_only_the_rooms_before_it(room: str, path: Path) -> None:
    allowed = OWN_IMPORTS[room]
    for module in _imported_service_modules(path):
        assert module in allowed or module.startswith(tuple(f"{prefix}." for prefix in allowed)), (
            f"{path.relative_to(REPO_ROOT)} imports {module}; the {room} room may import only {allowed}"
        )


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
