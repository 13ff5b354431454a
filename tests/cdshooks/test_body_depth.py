"""nesting_exceeds reads nesting from raw bytes; it must agree with a walk of the parsed value."""

from __future__ import annotations

from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cdshooks import json_depth as depth_module
from service.cdshooks.json_depth import nesting_exceeds

# Strings full of the characters the byte scan must see through: brackets, quotes, backslashes.
_TRICKY_TEXT = st.text(alphabet=st.sampled_from(list('{}[]"\\/ab:, \n\u00e9\u2028')), max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | _TRICKY_TEXT
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TRICKY_TEXT, children, max_size=4),
    max_leaves=40,
)


def _walked_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_walked_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_walked_depth(v) for v in value), default=0)
    return 0


def _depth_by_limits(body: bytes) -> int:
    """The smallest limit the body does not exceed, checked at every limit up to it."""
    limit = 0
    while nesting_exceeds(body, limit):
        limit += 1
    assert not any(nesting_exceeds(body, higher) for higher in range(limit, limit + 3))
    return limit


@settings(max_examples=400)
@given(_JSON)
def test_depth_from_bytes_matches_the_parsed_value(value: Any) -> None:
    body = orjson.dumps(value)
    depth = _walked_depth(orjson.loads(body))
    assert _depth_by_limits(body) == depth


def test_brackets_and_escapes_inside_strings_do_not_count() -> None:
    cases = {
        rb'{"a": "]]]]\"[[[[", "b": ["\\", "x\"]"]}': 2,
        rb'{"a": "\\\"{{{{{{"}': 1,
        rb'{"a": "\\", "b": [[["\\"]]]}': 4,
        b'"{[{["': 0,
        b"[[[[[]]]]]": 5,
    }
    for body, depth in cases.items():
        assert _depth_by_limits(body) == depth == _walked_depth(orjson.loads(body)), body


def test_depth_of_pretty_printed_json_with_whitespace() -> None:
    body = orjson.dumps({"a": [{"b": [1, {"c": []}]}]}, option=orjson.OPT_INDENT_2)
    assert _depth_by_limits(body) == 6


def test_hostile_nesting_is_caught_at_the_limit() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    assert nesting_exceeds(deep, 64)
    assert not nesting_exceeds(deep, 1000)
    assert nesting_exceeds(b'{"a": {"b": {}}}', 2) and not nesting_exceeds(b'{"a": {"b": {}}}', 3)


@settings(max_examples=300)
@given(_JSON, st.integers(min_value=1, max_value=24))
def test_depth_from_bytes_matches_when_read_in_small_chunks(value: Any, chunk: int) -> None:
    """Strings are dropped a chunk at a time; a string with a bracket in any chunk must still not count."""
    body = orjson.dumps(value)
    with mock.patch.object(depth_module, "_CHUNK", chunk):
        assert _depth_by_limits(body) == _walked_depth(value)


@pytest.mark.parametrize("at", [0, 1, 500, 2999])
def test_a_bracket_in_a_string_far_into_a_large_body(at: int) -> None:
    """Bodies larger than a chunk, with one unit such as mm[Hg] (or an unbalanced bracket) anywhere."""
    for text in ("mm[Hg]", "{score}", "]]]", "[[[[[[[[[["):
        items: list[Any] = [{"code": "kg", "value": [1, {"a": "b"}]} for _ in range(3000)]
        items[at] = {"code": text, "value": [[[[{"x": text}]]]]}
        body = orjson.dumps({"entry": items})
        assert len(body) > 4 * depth_module._CHUNK
        assert _depth_by_limits(body) == _walked_depth(items) + 1 == 8, (text, at)


def test_a_limit_is_never_met_early_by_the_length_bound() -> None:
    """The passes stop once the brackets left cannot hold more levels than the limit: exact at the edge."""
    for depth in range(1, 12):
        body = b"[" * depth + b"]" * depth
        wide = b"[" + b",".join([b"[]"] * 5 + [body]) + b"]"
        assert nesting_exceeds(body, depth - 1) and not nesting_exceeds(body, depth)
        assert nesting_exceeds(wide, depth) and not nesting_exceeds(wide, depth + 1)
