"""The one error the rule catalogue raises, shared by the engine and the facts definitions."""

from __future__ import annotations

__all__ = ["CatalogueError"]


class CatalogueError(Exception):
    """The catalogue in ``rules/`` is invalid; the message names the file, the rule and the field.

    ``entry`` names a catalogue entry that is not a rule (``"fact 'bmi'"``, ``"concept 'fall'"``).
    """

    def __init__(
        self,
        file: str,
        message: str,
        *,
        rule: str | None = None,
        field: str | None = None,
        entry: str | None = None,
    ):
        self.file = file
        self.rule = rule
        self.field = field
        self.entry = entry
        where = file
        if rule:
            where += f": rule '{rule}'"
        if entry:
            where += f": {entry}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
