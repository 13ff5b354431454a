"""CDS Hooks 2.0 responses carry no null or empty values: one recursive check for every test of it."""

from __future__ import annotations

__all__ = ["assert_no_null_or_empty"]


def assert_no_null_or_empty(value: object, where: str = "$") -> None:
    """Fail naming the first null, empty string, empty list or empty object below ``where``."""
    assert value is not None, f"{where} is null"
    if isinstance(value, str | list | dict):
        assert len(value) > 0, f"{where} is empty"
    if isinstance(value, dict):
        for key, child in value.items():
            assert_no_null_or_empty(child, f"{where}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            assert_no_null_or_empty(child, f"{where}[{index}]")
