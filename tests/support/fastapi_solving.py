"""A fixture recording which endpoints FastAPI solved parameters for (``DirectRoute`` ones are not)."""

from __future__ import annotations

import fastapi.routing
import pytest

__all__ = ["solved"]


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The endpoints FastAPI solved parameters for, by function name, in call order."""
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: object, **kwargs: object) -> object:
        dependant = kwargs["dependant"]
        calls.append(getattr(dependant.call, "__name__", "?"))
        return await solve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls
