"""Reading a request body once: size limit (413), JSON parse with orjson, nesting limit (400)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from service.cdshooks.errors import HookRequestError, PayloadTooLarge, describe_validation_errors

__all__ = ["read_json_body", "validate_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_body(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body; never reads more than ``max_bytes`` into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise HookRequestError("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HookRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HookRequestError(f"request body must be a JSON object, got {type(data).__name__}")
    if _depth_exceeds(data, max_depth):
        raise HookRequestError(f"request body is nested deeper than {max_depth} levels")
    return data


def validate_body(model: type[ModelT], data: Any) -> ModelT:
    """``model`` from parsed JSON, or a 400 naming the fields that are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HookRequestError(describe_validation_errors(exc.errors())) from None


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative depth check (no recursion, so a hostile body cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False
