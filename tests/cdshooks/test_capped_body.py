"""Answers of servers the service calls, read with a cap that holds after decompression."""

from __future__ import annotations

import gzip
import tracemalloc

import httpx
import pytest

from service.cdshooks.capped_body import BodyRefused, ByteBudget, read_capped

DOCUMENT = b'{"resourceType": "Bundle", "type": "searchset"}'


async def _read(body: bytes, headers: dict[str, str], max_bytes: int) -> bytes:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=headers, stream=httpx.ByteStream(body)))
    async with httpx.AsyncClient(transport=transport) as client, client.stream("GET", "http://127.0.0.1/fhir") as response:
        return await read_capped(response, ByteBudget(max_bytes))


@pytest.mark.parametrize("encoding", [None, "identity", "gzip", "GZIP", "x-gzip"])
async def test_a_plain_or_gzipped_answer_is_read_decoded(encoding: str | None) -> None:
    encoded = gzip.compress(DOCUMENT) if encoding and "gzip" in encoding.lower() else DOCUMENT
    headers = {"content-encoding": encoding} if encoding else {}
    assert await _read(encoded, headers, max_bytes=len(DOCUMENT)) == DOCUMENT


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_one_byte_over_the_cap_is_refused(encoding: str | None) -> None:
    encoded = gzip.compress(DOCUMENT) if encoding else DOCUMENT
    headers = {"content-encoding": encoding} if encoding else {}
    with pytest.raises(BodyRefused, match=f"larger than {len(DOCUMENT) - 1} bytes"):
        await _read(encoded, headers, max_bytes=len(DOCUMENT) - 1)


async def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    """200 MB of zeros in about 200 KB: refused having produced no more than the cap (and a step)."""
    bomb = gzip.compress(bytes(200 * 1024 * 1024), compresslevel=9)
    tracemalloc.start()
    try:
        with pytest.raises(BodyRefused, match="larger than 1048576 bytes"):
            await _read(bomb, {"content-encoding": "gzip"}, max_bytes=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024  # httpx decoding it gave 200 MB


@pytest.mark.parametrize("encoding", ["gzip, gzip", "deflate", "br", "compress", "gzip, identity, gzip"])
async def test_a_coding_that_was_not_asked_for_is_refused(encoding: str) -> None:
    """Stacked codings are how 2 KB became 1 GiB: only a single gzip (what the service asks for) is read."""
    with pytest.raises(BodyRefused, match="was not asked for"):
        await _read(gzip.compress(gzip.compress(DOCUMENT)), {"content-encoding": encoding}, max_bytes=1024 * 1024)


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(DOCUMENT)[:-6]], ids=["not gzip", "truncated"])
async def test_broken_gzip_is_refused(body: bytes) -> None:
    with pytest.raises(BodyRefused, match="gzip data is broken"):
        await _read(body, {"content-encoding": "gzip"}, max_bytes=1024 * 1024)
