"""Reading a request body once: size limit (413), no compression, JSON parse with orjson, nesting
limit (400)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from service.cdshooks.errors import HookRequestError, PayloadTooLarge, describe_validation_errors
from service.cdshooks.json_depth import nesting_exceeds

__all__ = ["parse_json_body", "read_body", "read_json_body", "validate_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_body(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body; never reads more than ``max_bytes`` into memory."""
    return parse_json_body(await read_body(request, max_bytes=max_bytes), max_depth=max_depth)


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body; never reads more than ``max_bytes`` into memory (413), and only an
    uncompressed one: read as it came, a gzip body was "not valid JSON ... line 1 column 1", and a
    plain one labelled ``br`` was taken. A 400, as interface.md section 4 lists the codes (RFC 7694
    would make it 415)."""
    coding = ", ".join(request.headers.getlist("content-encoding")).strip()  # every line of it, not the first
    if coding and coding.lower() != "identity":
        raise HookRequestError(
            f"request body has Content-Encoding '{coding[:40]}', which is not supported; send it uncompressed (identity)"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # An aborted upload, or chunked framing the server refused: the client's doing, so a 400 in
        # the request's log line and metrics (nobody is left to read it), not a traceback and a 500.
        raise HookRequestError("the client closed the connection before sending the whole request body") from None
    return b"".join(chunks)


def parse_json_body(body: bytes, *, max_depth: int) -> dict[str, Any]:
    """A body parsed as a JSON object (400 for anything else, or nested deeper than ``max_depth``)."""
    if not body or body.isspace():  # as ``not body.strip()``, without copying the body
        raise HookRequestError("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HookRequestError(f"request body is not valid JSON: {_not_utf8(body) or exc}") from None
    if not isinstance(data, dict):
        raise HookRequestError(f"request body must be a JSON object, got {type(data).__name__}")
    if nesting_exceeds(body, max_depth):
        raise HookRequestError(f"request body is nested deeper than {max_depth} levels")
    return data


def _not_utf8(body: bytes) -> str | None:
    """Where ``body`` stops being UTF-8, or None: orjson reports any such body at line 1 column 1."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 (byte 0x{body[exc.start]:02X} at offset {exc.start}); JSON is sent as UTF-8"
    return None


def validate_body(model: type[ModelT], data: Any) -> ModelT:
    """``model`` from parsed JSON, or a 400 naming the fields that are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HookRequestError(describe_validation_errors(exc.errors())) from None
