"""The example requests in ``examples/`` (what README's curl sends), read as JSON for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["EXAMPLES", "example"]

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def example(name: str) -> dict[str, Any]:
    """``examples/<name>`` parsed: a fresh object on every call, so a test may change it."""
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return loaded
