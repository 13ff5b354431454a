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

__all__ = ["ACCEPT_ENCODING", "BodyRefused", "BodyTooLarge", "read_capped"]

# The only coding asked for (``Accept-Encoding``), so the only one accepted besides none.
ACCEPT_ENCODING = "gzip"
_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip header and trailer


class BodyRefused(Exception):
    """The answer is larger than the cap, or encoded in a way that was not asked for."""


class BodyTooLarge(BodyRefused):
    """The answer, decoded, is larger than the cap."""


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, decoded; :class:`BodyRefused` once it would pass ``max_bytes`` (after decoding)."""
    inflater = _inflater_for(response.headers.get("content-encoding", ""))
    body = bytearray()
    try:
        async for raw in response.aiter_raw():
            if inflater is None:
                body += raw
            else:
                _inflate_into(body, inflater, raw, max_bytes)
            if len(body) > max_bytes:
                raise BodyTooLarge(f"it is larger than {max_bytes} bytes")
        if inflater is not None:
            body += inflater.flush(max_bytes - len(body) + 1)
            if not inflater.eof:
                raise BodyRefused("its gzip data is broken (it ends before the gzip stream does)")
    except zlib.error as exc:
        raise BodyRefused(f"its gzip data is broken ({exc})") from None
    if len(body) > max_bytes:
        raise BodyTooLarge(f"it is larger than {max_bytes} bytes")
    return bytes(body)


def _inflate_into(body: bytearray, inflater: zlib._Decompress, data: bytes, max_bytes: int) -> None:
    """Each step yields at most one byte past the cap, however far ``data`` would inflate."""
    while data and len(body) <= max_bytes:
        body += inflater.decompress(data, max_bytes - len(body) + 1)
        data = inflater.unconsumed_tail


def _inflater_for(content_encoding: str) -> zlib._Decompress | None:
    codings = [coding.strip().lower() for coding in content_encoding.split(",") if coding.strip()]
    codings = [coding for coding in codings if coding != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(_GZIP)
    raise BodyRefused(f"its Content-Encoding '{content_encoding[:100]}' was not asked for (only {ACCEPT_ENCODING})")
