"""The one error the rule catalogue raises, and how a catalogue file's problems become it.

Shared by the engine (``rules/catalogue.yaml``, ``services.yaml``, the rule files) and the facts
definitions (``valuesets.yaml``, ``facts.yaml``), so every file of ``rules/`` fails the same
way: the file, the entry and the field named as a YAML path, the message written for whoever
edits the YAML, not for whoever reads pydantic's source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["CatalogueError", "from_validation_error", "read_catalogue_yaml", "validate_catalogue_file"]

ModelT = TypeVar("ModelT", bound=BaseModel)


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


def read_catalogue_yaml(path: Path) -> Any:
    """The YAML document in ``path``; a file that is missing, unreadable or not YAML is a CatalogueError."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(str(path), "file not found") from None
    except UnicodeDecodeError:
        raise CatalogueError(str(path), "not UTF-8 text") from None
    except OSError as exc:
        raise CatalogueError(str(path), f"cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        # One line: the message goes into a log line and a CLI error.
        raise CatalogueError(str(path), f"not valid YAML: {' '.join(str(exc).split())}") from None


def validate_catalogue_file(
    model: type[ModelT], raw: Any, *, file: Path, rule: str | None = None, entry: str | None = None
) -> ModelT:
    """``raw`` (a whole file's YAML) as ``model``, or a CatalogueError naming the first problem."""
    if not isinstance(raw, dict):
        raise CatalogueError(
            str(file), f"expected a YAML mapping at the top level, got {type(raw).__name__}", rule=rule, entry=entry
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, file=file, rule=rule, entry=entry) from None


def from_validation_error(
    exc: ValidationError, *, file: Path, rule: str | None = None, entry: str | None = None
) -> CatalogueError:
    """pydantic's first error, as a CatalogueError whose field is a YAML path (``card.reasons[0].text``)."""
    first = exc.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; rules/README.md lists the fields)"
    elif first["type"] == "string_pattern_mismatch":
        message = f"got {first['input']!r}, which does not have the expected form {first['ctx']['pattern']}"
    return CatalogueError(str(file), message, rule=rule, entry=entry, field=_yaml_path(first["loc"]) or None)


def _yaml_path(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
