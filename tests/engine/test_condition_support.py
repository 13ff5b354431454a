"""``support``: one pass over a condition that says whether it holds and which holding facts made it so.

Checked against the definition (evaluate each part, gather the supporting facts of the true parts)
for every condition of the catalogue, rules and reasons, over every combination of their facts.
"""

from __future__ import annotations

import itertools

from service.engine.conditions import AllOf, AnyOf, Condition, CountOf, FactRef, Holds, Not, parse_condition
from tests.engine.builders import catalogue


def _by_definition(condition: Condition, holds: Holds) -> tuple[str, ...]:
    if isinstance(condition, FactRef):
        return (condition.name,) if holds(condition.name) else ()
    if isinstance(condition, Not):
        return ()
    if isinstance(condition, CountOf):
        return tuple(name for name in condition.facts if holds(name))
    assert isinstance(condition, AllOf | AnyOf)
    names = (name for item in condition.items if item.evaluate(holds) for name in _by_definition(item, holds))
    return tuple(dict.fromkeys(names))


def _check(condition: Condition) -> None:
    names = condition.fact_names()
    for size in range(len(names) + 1):
        for holding in itertools.combinations(names, size):
            holds = frozenset(holding).__contains__
            expected = _by_definition(condition, holds)
            assert condition.support(holds) == (expected if condition.evaluate(holds) else None)


def test_support_matches_the_definition_for_every_condition_of_the_catalogue() -> None:
    for rule in catalogue().rules:
        _check(rule.condition)
        for reason in rule.reasons:
            _check(reason.when)


def test_support_of_nested_and_repeated_parts() -> None:
    known = frozenset({"a", "b", "c", "d"})
    for raw in (
        {"any": [{"all": ["a", {"not": "b"}]}, {"count": {"of": ["a", "c", "d"], "at_least": 2}}, "a"]},
        {"all": [{"any": ["a", "b"]}, {"any": ["b", "c"]}, {"not": {"all": ["c", "d"]}}]},
        {"not": {"any": ["a", "b"]}},
        {"count": {"of": ["a", "b", "c", "d"], "at_least": 3}},
    ):
        _check(parse_condition(raw, known_facts=known))
