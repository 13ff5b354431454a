"""Errors of the CDS Hooks room, and the one place they become HTTP responses.

Every client mistake maps to a 4xx with ``{"error": "..."}`` saying what is wrong; a 401 is
always the same bare body (interface.md decision 3), its reason only in the log.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from service.json_response import OrjsonResponse
from service.logs import bind_request_fields
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "CdsError",
    "HookRequestError",
    "UnknownService",
    "PrefetchUnavailable",
    "PayloadTooLarge",
    "RETRY_AFTER_SECONDS",
    "RETRY_LATER_HEADERS",
    "StoreUnavailableError",
    "install_error_handlers",
    "error_response",
]


# Retry-After on a 503 the client should retry soon (a database that cannot answer now, a process
# shutting down): a retry in a moment may succeed.
RETRY_AFTER_SECONDS = 2
RETRY_LATER_HEADERS = {"Retry-After": str(RETRY_AFTER_SECONDS)}


class CdsError(Exception):
    """Root of the errors a CDS Hooks call can end in; each knows its status code (and headers)."""

    status_code = 400
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class HookRequestError(CdsError):
    """The request body or its context is malformed (400)."""

    status_code = 400


class UnknownService(CdsError):
    """No service with that id (404)."""

    status_code = 404


class PrefetchUnavailable(CdsError):
    """Required prefetch data is missing and cannot be fetched (412, CDS Hooks 2.0 section 3)."""

    status_code = 412


class PayloadTooLarge(CdsError):
    status_code = 413


class StoreUnavailableError(CdsError):
    """The database cannot store what the client sent; the client should retry (503)."""

    status_code = 503
    headers = RETRY_LATER_HEADERS


UNAUTHORIZED_BODY = {"error": "unauthorized"}


def error_response(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> OrjsonResponse:
    """``{"error": message}``; the message is also the ``error`` field of the request's log line
    (cut to a bounded length): what an operator asked "why does our EHR get 400s?" looks for. No
    error message holds a token or patient data."""
    bind_request_fields(error=message)
    return OrjsonResponse({"error": message}, status_code=status_code, headers=headers)


def unauthorized_response() -> OrjsonResponse:
    return OrjsonResponse(UNAUTHORIZED_BODY, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def _cds_error(_request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, CdsError)
    return error_response(exc.status_code, exc.message, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, describe_validation_errors(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


def describe_validation_errors(errors: list[dict]) -> str:  # type: ignore[type-arg]
    """One readable line from pydantic errors: ``context.patientId: Field required; ...``."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        message = str(error.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CdsError, _cds_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
