"""The small boolean language of rule conditions: fact names, ``all``, ``any``, ``not``, ``count``.

A condition is written in YAML by clinical governance, so it stays tiny and total: it names
facts (never FHIR data), and it is checked when the catalogue loads so that a typo in a fact
name fails at start-up, not silently at the bedside. ``count`` expresses "at least n of these
facts hold" (clinical-rules.md section 2: ``n >= 2`` of the four risk factors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "ConditionError",
    "CountOf",
    "FactRef",
    "Holds",
    "Not",
    "parse_condition",
]


class ConditionError(ValueError):
    """A condition is malformed; ``field`` is the dotted path to the offending part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


Holds = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class FactRef:
    """True when the named fact holds."""

    name: str

    def evaluate(self, holds: Holds) -> bool:
        return holds(self.name)

    def fact_names(self) -> tuple[str, ...]:
        return (self.name,)

    def support(self, holds: Holds) -> tuple[str, ...] | None:
        """None when the condition is false, else the holding facts that made it true, in one pass
        (a fact under ``not`` never does; an ``any`` counts each of its true parts)."""
        return (self.name,) if holds(self.name) else None

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def evaluate(self, holds: Holds) -> bool:
        # A loop, not all() over a generator (faster): reasons' ``when`` and ``not`` ask it on every call.
        for item in self.items:
            if not item.evaluate(holds):
                return False
        return True

    def fact_names(self) -> tuple[str, ...]:
        return _unique(name for item in self.items for name in item.fact_names())

    def support(self, holds: Holds) -> tuple[str, ...] | None:
        names: dict[str, None] = {}
        for item in self.items:
            held = item.support(holds)
            if held is None:
                return None
            for name in held:
                names[name] = None
        return tuple(names)

    def describe(self) -> str:
        return "(" + " and ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def evaluate(self, holds: Holds) -> bool:
        for item in self.items:  # a loop, as in AllOf
            if item.evaluate(holds):
                return True
        return False

    def fact_names(self) -> tuple[str, ...]:
        return _unique(name for item in self.items for name in item.fact_names())

    def support(self, holds: Holds) -> tuple[str, ...] | None:
        names: dict[str, None] = {}
        true = False
        for item in self.items:  # every item: each true one supports
            held = item.support(holds)
            if held is not None:
                true = True
                for name in held:
                    names[name] = None
        return tuple(names) if true else None

    def describe(self) -> str:
        return "(" + " or ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def evaluate(self, holds: Holds) -> bool:
        return not self.item.evaluate(holds)

    def fact_names(self) -> tuple[str, ...]:
        return self.item.fact_names()

    def support(self, holds: Holds) -> tuple[str, ...] | None:
        return None if self.item.evaluate(holds) else ()  # an absent fact is not evidence of anything

    def describe(self) -> str:
        return f"not {self.item.describe()}"


@dataclass(frozen=True, slots=True)
class CountOf:
    """At least ``at_least`` of the named facts hold."""

    facts: tuple[str, ...]
    at_least: int

    def evaluate(self, holds: Holds) -> bool:
        held = 0  # a loop, as in AllOf
        for name in self.facts:
            if holds(name):
                held += 1
        return held >= self.at_least

    def fact_names(self) -> tuple[str, ...]:
        return self.facts

    def support(self, holds: Holds) -> tuple[str, ...] | None:
        held = tuple([name for name in self.facts if holds(name)])  # a list: a generator costs 0.07 us more
        return held if len(held) >= self.at_least else None

    def describe(self) -> str:
        return f"at least {self.at_least} of ({', '.join(self.facts)})"


Condition = FactRef | AllOf | AnyOf | Not | CountOf

_FACT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def parse_condition(raw: Any, *, field: str = "condition", known_facts: frozenset[str]) -> Condition:
    """Parse the YAML form of a condition, naming the exact field of the first problem.

    Forms: ``fact_name``; ``{all: [c, ...]}``; ``{any: [c, ...]}``; ``{not: c}``;
    ``{count: {of: [fact_name, ...], at_least: n}}``.
    """
    if isinstance(raw, str):
        return FactRef(_fact_name(raw, field=field, known_facts=known_facts))
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConditionError(
            field,
            "must be a fact name or a mapping with exactly one of 'all', 'any', 'not', 'count'; "
            f"got {_show(raw)}",
        )
    ((operator, body),) = raw.items()
    inner = f"{field}.{operator}"
    if operator in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise ConditionError(inner, f"must be a non-empty list of conditions; got {_show(body)}")
        items = tuple(
            parse_condition(item, field=f"{inner}[{index}]", known_facts=known_facts) for index, item in enumerate(body)
        )
        return AllOf(items) if operator == "all" else AnyOf(items)
    if operator == "not":
        return Not(parse_condition(body, field=inner, known_facts=known_facts))
    if operator == "count":
        return _parse_count(body, field=inner, known_facts=known_facts)
    raise ConditionError(field, f"unknown operator '{operator}'; use 'all', 'any', 'not' or 'count'")


def _parse_count(body: Any, *, field: str, known_facts: frozenset[str]) -> CountOf:
    if not isinstance(body, dict) or set(body) != {"of", "at_least"}:
        raise ConditionError(field, f"must be a mapping with exactly 'of' and 'at_least'; got {_show(body)}")
    names = body["of"]
    if not isinstance(names, list) or not names:
        raise ConditionError(f"{field}.of", f"must be a non-empty list of fact names; got {_show(names)}")
    facts = tuple(
        _fact_name(name, field=f"{field}.of[{index}]", known_facts=known_facts) for index, name in enumerate(names)
    )
    if len(set(facts)) != len(facts):
        raise ConditionError(f"{field}.of", "names a fact twice")
    at_least = body["at_least"]
    if isinstance(at_least, bool) or not isinstance(at_least, int) or not 1 <= at_least <= len(facts):
        raise ConditionError(
            f"{field}.at_least", f"must be a whole number from 1 to {len(facts)}; got {_show(at_least)}"
        )
    return CountOf(facts, at_least)


def _fact_name(raw: Any, *, field: str, known_facts: frozenset[str]) -> str:
    if not isinstance(raw, str) or not raw or not set(raw) <= _FACT_NAME_CHARS:
        raise ConditionError(field, f"must be a fact name (lower_snake_case); got {_show(raw)}")
    if raw not in known_facts:
        raise ConditionError(field, f"unknown fact '{raw}'; known facts: {', '.join(sorted(known_facts))}")
    return raw


def _unique(names: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
