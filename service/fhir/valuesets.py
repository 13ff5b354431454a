"""``rules/valuesets.yaml``: the concepts the facts read (concept -> codes per code system),
checked and compiled into one ``CodeMatcher``. Every problem is a ``CatalogueError`` naming the
file, the concept and the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from service.catalogue_error import CatalogueError, from_validation_error, read_catalogue_yaml, validate_catalogue_file
from service.fhir.codes import CodeMatcher, CodePattern, CodeSystem, parse_pattern

__all__ = ["VALUESETS_FILE", "Concept", "StrictModel", "ValueSets", "check_name", "load_valuesets"]

VALUESETS_FILE = "valuesets.yaml"

_NAME = r"^[a-z][a-z0-9_]*$"


class StrictModel(BaseModel):
    """A catalogue file's entries: unknown fields refused, numbers read as the strings they are."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class _SystemEntry(StrictModel):
    uri: str = Field(min_length=1)
    stems: bool = False
    insert_dot_after: StrictInt | None = Field(default=None, ge=1)
    # A regular expression every code listed for this system must match (systems without stems):
    # a mistyped code ("2305600X") is refused at load, not left to never match.
    code_format: str | None = None

    @field_validator("code_format")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class _ConceptEntry(StrictModel):
    label: str = Field(min_length=1)
    source: str = Field(min_length=1)
    codes: dict[str, list[str]] = Field(min_length=1)


class _ValueSetsFile(StrictModel):
    version: str = Field(min_length=1)
    systems: dict[str, _SystemEntry] = Field(min_length=1)
    concepts: dict[str, Any] = Field(min_length=1)  # each entry checked on its own, to name it


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class ValueSets:
    version: str
    concepts: Mapping[str, Concept]
    matcher: CodeMatcher


def load_valuesets(rules_dir: Path) -> ValueSets:
    path = rules_dir / VALUESETS_FILE
    valuesets = validate_catalogue_file(_ValueSetsFile, read_catalogue_yaml(path), file=path)
    systems, concepts, entries = _compile(valuesets, path)
    return ValueSets(valuesets.version, concepts, CodeMatcher(systems, entries))


def check_name(name: str, path: Path, where: str) -> None:
    if not re.fullmatch(_NAME, name):
        raise CatalogueError(str(path), "names are lower_snake_case (a-z, 0-9, _)", entry=where)


def _compile(valuesets: _ValueSetsFile, path: Path) -> tuple[list[CodeSystem], dict[str, Concept], list[tuple[str, str, CodePattern]]]:
    systems = {
        name: CodeSystem(name, entry.uri, stems=entry.stems, insert_dot_after=entry.insert_dot_after)
        for name, entry in valuesets.systems.items()
    }
    concepts: dict[str, Concept] = {}
    entries: list[tuple[str, str, CodePattern]] = []
    for name, raw in valuesets.concepts.items():
        where = f"concept '{name}'"
        check_name(name, path, where)
        if not isinstance(raw, dict):
            raise CatalogueError(str(path), "expected a mapping with label, source and codes", entry=where)
        try:
            concept = _ConceptEntry.model_validate(raw)
        except ValidationError as exc:
            raise from_validation_error(exc, file=path, entry=where) from None
        for system_name, codes in concept.codes.items():
            system = systems.get(system_name)
            if system is None:
                known = ", ".join(sorted(systems))
                raise CatalogueError(
                    str(path), f"unknown code system '{system_name}'; 'systems' defines: {known}",
                    entry=where, field=f"codes.{system_name}",
                )
            if not codes:
                raise CatalogueError(str(path), "list at least one code", entry=where, field=f"codes.{system_name}")
            code_format = valuesets.systems[system_name].code_format
            for index, text in enumerate(codes):
                try:
                    entries.append((name, system_name, parse_pattern(text, stems=system.stems)))
                    if code_format is not None and not system.stems and not re.fullmatch(code_format, text.strip()):
                        raise ValueError(f"'{text}' is not a {system_name} code (code_format {code_format})")
                except ValueError as exc:
                    raise CatalogueError(str(path), str(exc), entry=where, field=f"codes.{system_name}[{index}]") from None
        concepts[name] = Concept(name, concept.label, concept.source)
    return list(systems.values()), concepts, entries
