"""Reading an HTTP answer from a server the service calls (FHIR server, JWKS host) with a size cap
that holds after decompression.

httpx decodes ``Content-Encoding`` before its chunks reach the caller, and decodes every coding a
server stacks (``gzip, gzip``): a 2 KB answer became 1 GiB in one step, far past any cap checked
on the decoded chunks. So the service asks for ``gzip`` only, reads the raw bytes, and inflates
them in steps that never produce more than the cap allows.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["ACCEPT_ENCODING", "BodyRefused", "BodyTooLarge", "ByteBudget", "read_capped"]

# The only coding asked for (``Accept-Encoding``), so the only one accepted besides none.
ACCEPT_ENCODING = "gzip"
_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip header and trailer


class BodyRefused(Exception):
    """The answer is larger than the cap, or encoded in a way that was not asked for."""


class BodyTooLarge(BodyRefused):
    """The answer, decoded, is larger than the cap."""


class ByteBudget:
    """Bytes answers may hold once decoded: one answer's, or (shared) every answer of one hook
    call's, charged as each piece arrives so answers read at the same time see each other."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise BodyTooLarge(f"it is larger than {self.limit} bytes")


async def read_capped(response: httpx.Response, budget: ByteBudget) -> bytes:
    """The body, decoded; :class:`BodyRefused` once the budget would be passed (after decoding)."""
    inflater = _inflater_for(response.headers.get("content-encoding", ""))
    body = bytearray()
    try:
        async for raw in response.aiter_raw():
            piece = raw if inflater is None else _inflated(inflater, raw, budget.left)
            budget.take(len(piece))
            body += piece
        if inflater is not None:
            piece = inflater.flush(budget.left + 1)
            budget.take(len(piece))
            body += piece
            if not inflater.eof:
                raise BodyRefused("its gzip data is broken (it ends before the gzip stream does)")
    except zlib.error as exc:
        raise BodyRefused(f"its gzip data is broken ({exc})") from None
    return bytes(body)


def _inflated(inflater: zlib._Decompress, data: bytes, room: int) -> bytes:
    """``data`` inflated, but never more than one byte past ``room``, however far it would inflate."""
    out = bytearray()
    while data and len(out) <= room:
        out += inflater.decompress(data, room - len(out) + 1)
        data = inflater.unconsumed_tail
    return bytes(out)


def _inflater_for(content_encoding: str) -> zlib._Decompress | None:
    codings = [coding.strip().lower() for coding in content_encoding.split(",") if coding.strip()]
    codings = [coding for coding in codings if coding != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(_GZIP)
    raise BodyRefused(f"its Content-Encoding '{content_encoding[:100]}' was not asked for (only {ACCEPT_ENCODING})")
