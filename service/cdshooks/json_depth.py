"""How deeply a JSON document nests, read from its raw bytes before anything walks the parsed value:
for request bodies (400) and FHIR server answers (412) alike (``CDS_MAX_JSON_DEPTH``)."""

from __future__ import annotations

import re

__all__ = ["nesting_exceeds"]

# A backslash and the character it escapes (JSON escapes are a backslash and one character, or \uXXXX).
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Escapes cut out one by one with bytes.find (memchr) before the rest goes to the regex: a body
# with a few escapes is the common case, and the regex scans every byte (15 us on 35 KB).
_ESCAPES_FOUND_ONE_BY_ONE = 16
# Every byte but the four brackets and the quote is deleted; curly brackets become square ones.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'{}[]"')
_CURLY_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
# Brackets and quotes checked for strings with brackets in them at a time (see _brackets_outside_strings).
_CHUNK = 8192


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """True when objects and arrays in ``body`` nest deeper than ``limit``; ``body`` must be valid JSON.

    Read from the raw bytes with C-speed byte operations, not by walking the parsed value: a walk
    of every value in Python cost three times the JSON parse itself on a large prefetch
    (``python -m bench.profile``). Strings are taken out first so brackets inside them do not count.
    """
    # No escaped quote (nor an escaped backslash before a quote): every quote already delimits a string.
    if b'\\"' in body:
        body = _without_escapes(body)
    brackets = _brackets_outside_strings(body.translate(_CURLY_TO_SQUARE, _NOT_STRUCTURE))
    # Each pass removes the innermost pairs, one level of nesting: empty after `depth` passes. What
    # is left after `passes` holds at most len/2 more levels: stop once that fits in the limit.
    # Pairs are blanked in place and the blanks deleted (5.5 us on the typical body, 7.7 cutting them out).
    for passes in range(limit):
        if passes + len(brackets) // 2 <= limit:
            return False
        brackets = brackets.replace(b"[]", b"  ").translate(None, b" ")
    return bool(brackets)


def _brackets_outside_strings(structure: bytes) -> bytes:
    """The brackets of ``structure`` (brackets and the quotes of escape-free JSON) that are not
    inside a string.

    Most strings hold no bracket and show as ``""``. Between two brackets the quotes are then an
    even run, which two counts tell (every run even exactly when half the quotes pair up as
    ``""``): the quotes are simply deleted, 5 us on the typical body instead of 12 us cutting the
    pairs out one by one. Checked a chunk at a time, so a string with a bracket in it (a UCUM unit
    such as mm[Hg]) sends only the rest of the body the slower exact way.
    """
    kept = []
    start = 0
    size = len(structure)
    while start < size:
        end = _bracket_at_or_after(structure, start + _CHUNK)
        chunk = structure[start:end] if start or end < size else structure
        brackets = chunk.translate(None, b'"')
        if len(chunk) - len(brackets) != 2 * chunk.count(b'""'):
            # A bracket inside a string in this chunk; the chunk starts outside any string.
            kept.append(_brackets_outside_strings_exactly(structure[start:]))
            break
        kept.append(brackets)
        start = end
    return kept[0] if len(kept) == 1 else b"".join(kept)


def _bracket_at_or_after(structure: bytes, at: int) -> int:
    """The index of the first bracket at or after ``at``, or the length: never inside a run of quotes."""
    found = [index for index in (structure.find(b"[", at), structure.find(b"]", at)) if index >= 0]
    return min(found) if found else len(structure)


def _brackets_outside_strings_exactly(structure: bytes) -> bytes:
    """``_brackets_outside_strings`` for a ``structure`` that starts outside any string."""
    # Two adjacent quotes are an empty string or the gap between two strings: blanking them keeps
    # every bracket on its side of the quotes (blanked in place: 70 us instead of 104 cutting them
    # out, heavy body). What stays quoted is a string with a bracket in it.
    structure = structure.replace(b'""', b"  ")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[0::2])  # no quote left
    return structure.translate(None, b" ")


def _without_escapes(body: bytes) -> bytes:
    """``body`` with every escape (a backslash and the byte after it) cut out, as ``_ESCAPE.sub`` does."""
    kept = []
    start = 0
    for _ in range(_ESCAPES_FOUND_ONE_BY_ONE):
        at = body.find(b"\\", start)
        if at < 0:
            kept.append(body[start:])
            return b"".join(kept)
        kept.append(body[start:at])
        start = at + 2
    kept.append(_ESCAPE.sub(b"", body[start:]))  # many escapes: one regex pass over the rest
    return b"".join(kept)
