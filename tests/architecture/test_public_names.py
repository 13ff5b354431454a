"""Style rules of architecture.md and style-anchors.md that a reviewer would otherwise have to remember.

- every module of ``service/`` lists its public names in ``__all__``, and each listed name exists;
- no catch-all ``utils.py`` anywhere: modules are named for what they hold;
- nothing between the facts and the cards catches ``Exception``: a bug there must fail a test
  and reach the log, never hide as "no cards" (style-anchors.md, point 9).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SERVICE = REPO_ROOT / "service"
MODULES = sorted(path for path in SERVICE.rglob("*.py") if path.name != "__main__.py")
# From FHIR facts to cards: the code between them may only catch what it names.
FACTS_TO_CARDS = ("service/fhir/", "service/engine/", "service/cards.py", "service/card_text.py", "service/pipeline.py")
CATCH_ALLS = {"Exception", "BaseException"}


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_module_lists_its_public_names(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assigned = [
        node
        for node in tree.body
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets))
        or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__")
    ]
    assert assigned, f"{_relative(path)} has no __all__"
    module = importlib.import_module(_module_name(path))
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{_relative(path)} lists names it does not define: {missing}"


def test_no_catch_all_modules() -> None:
    for root in ("service", "robustness", "bench", "tests", "scripts"):
        found = [_relative(path) for path in (REPO_ROOT / root).rglob("utils.py")]
        assert not found, f"name modules for what they hold, not {found}"


@pytest.mark.parametrize("path", [p for p in MODULES if _relative(p).startswith(FACTS_TO_CARDS)], ids=_relative)
def test_nothing_between_facts_and_cards_catches_everything(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ExceptHandler):
            caught = node.type
            names = {e.id for e in caught.elts if isinstance(e, ast.Name)} if isinstance(caught, ast.Tuple) else (
                {caught.id} if isinstance(caught, ast.Name) else set()
            )
            assert caught is not None and not names & CATCH_ALLS, (
                f"{_relative(path)}:{node.lineno} catches {ast.unparse(caught) if caught else 'everything'}; catch what you expect"
            )
