"""Robustness runs outside the unit tests: ``make fuzz`` (schemathesis) and ``make soak``."""

__all__: list[str] = []
