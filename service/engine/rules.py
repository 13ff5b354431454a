"""One rule of the catalogue: its schema (one YAML file per rule) and its checked, loaded form.

The schema is strict (unknown keys are errors) because the files are written by people: a
misspelt ``suppress_day`` must fail ``rules check``, not silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from service.engine.conditions import Condition, FactRef
from service.engine.templates import Template

__all__ = [
    "FactSpec",
    "Indicator",
    "Reason",
    "RequestCode",
    "Rule",
    "RuleFile",
    "SuggestionSpec",
]

Indicator = Literal["critical", "warning", "info"]


@dataclass(frozen=True, slots=True)
class FactSpec:
    """What the catalogue needs to know about a fact defined by the facts layer."""

    name: str
    description: str
    values: tuple[str, ...]  # the value names a fact may carry, usable as card placeholders
    parameters: Mapping[str, int | float]  # its thresholds and windows, e.g. {"older_age_years": 50}


# --- the YAML schema ---------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CodingFile(_Strict):
    system: str = Field(pattern=r"^(https?://|urn:)\S+$")
    code: str = Field(min_length=1, pattern=r"^\S+$")
    display: str = Field(min_length=1)


class RequestFile(_Strict):
    intent: Literal["proposal", "plan", "order"] = "proposal"
    code: CodingFile | None = None
    text: str = Field(min_length=1)


class SuggestionFile(_Strict):
    label: str = Field(min_length=1, max_length=200)
    recommended: bool = False
    request: RequestFile


class ReasonFile(_Strict):
    fact: str
    when: Any = None
    summary: str | None = Field(default=None, min_length=1)
    text: str = Field(min_length=1)


class CardFile(_Strict):
    summary: str = Field(min_length=1)
    reasons: list[ReasonFile] = Field(min_length=1)
    advice: str = Field(min_length=1)


class RuleFile(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1)
    indicator: Indicator
    suppress_days: StrictInt = Field(ge=1, le=3650)  # strict: YAML's yes/on/true are booleans
    checks: str = Field(min_length=1)
    condition: Any
    card: CardFile
    citations: list[str] = Field(min_length=1)
    selection_behavior: Literal["at-most-one", "any"] | None = None
    suggestions: list[SuggestionFile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selection_behavior_matches_suggestions(self) -> RuleFile:
        # CDS Hooks cds-resp-6 and cds-resp-1, checked here so a card can never break them.
        if self.suggestions and self.selection_behavior is None:
            raise ValueError("selection_behavior is required when the rule has suggestions ('at-most-one' or 'any')")
        if not self.suggestions and self.selection_behavior is not None:
            raise ValueError("selection_behavior is only allowed when the rule has suggestions")
        if self.selection_behavior == "at-most-one" and sum(s.recommended for s in self.suggestions) > 1:
            raise ValueError("with selection_behavior 'at-most-one', at most one suggestion may be recommended")
        return self


# --- the loaded form -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    """One line of a card's "why": shown when ``when`` holds, with ``fact``'s values and evidence."""

    fact: str
    when: Condition
    summary: Template | None  # a short phrase joined into the card summary's {reasons}
    text: Template


@dataclass(frozen=True, slots=True)
class RequestCode:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class SuggestionSpec:
    """A ServiceRequest the card proposes; reasonReference comes from the facts that fired."""

    label: str
    recommended: bool
    intent: str
    code: RequestCode | None  # None: no verified code exists, so only code.text is sent
    text: str


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: str
    title: str
    service: str
    indicator: Indicator
    suppress_days: int
    checks: str
    condition: Condition
    summary: Template
    reasons: tuple[Reason, ...]
    advice: Template
    citations: tuple[str, ...]
    selection_behavior: str | None
    suggestions: tuple[SuggestionSpec, ...]
    thresholds: Mapping[str, int | float]  # parameters of every fact the rule uses
    file: str
    # Worked out once when the rule is built: every evaluation asks for them.
    _fact_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = list(self.condition.fact_names())
        for reason in self.reasons:
            names.extend(reason.when.fact_names())
            names.append(reason.fact)
        object.__setattr__(self, "_fact_names", tuple(dict.fromkeys(names)))

    def fact_names(self) -> tuple[str, ...]:
        """Every fact the rule reads: its condition first, then its reasons."""
        return self._fact_names

    @staticmethod
    def default_when(fact: str) -> Condition:
        return FactRef(fact)
