"""Where the data the service ships with lives: ``rules/`` (the catalogue) and ``migrations/``.

In a checkout, and in an editable install of it (``make``, the Dockerfile), they sit beside the
``service`` package. A wheel built from the checkout (``pip install .``) copies them into the
package as ``service/_bundled/`` (``setup.py``), so an install needs no checkout; that copy is
looked for first, because a ``rules`` or ``migrations`` beside an installed package in
site-packages would be some other project's.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED", "shipped_dir"]

BUNDLED = "_bundled"  # setup.py copies rules/ and migrations/ there when it builds a wheel
_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str, *, package: Path = _PACKAGE) -> Path:
    """``rules`` or ``migrations``: the copy bundled into the installed package, else the checkout's."""
    bundled = package / BUNDLED / name
    return bundled if bundled.is_dir() else package.parent / name
