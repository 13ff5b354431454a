"""Data gathering: the prefetch a client sent, completed from its FHIR server when allowed.

SEAM: prefetch only; the FHIR server fallback (allowlist, timeout, pagination) plugs in here.
"""

from __future__ import annotations

from typing import Any

import httpx

from service.cdshooks.errors import PrefetchUnavailable
from service.cdshooks.models import HookRequest

__all__ = ["Gatherer"]


class Gatherer:
    def __init__(self, client: httpx.AsyncClient, *, allowlist: list[str], timeout_seconds: float, page_limit: int):
        self._client = client
        self._allowlist = allowlist
        self._timeout = timeout_seconds
        self._page_limit = page_limit

    async def gather(self, request: HookRequest, templates: dict[str, str]) -> dict[str, Any]:
        """Every declared prefetch key -> its data (a resource, a Bundle, or None for no data)."""
        prefetch = request.prefetch or {}
        missing = [key for key in templates if _is_missing(prefetch, key)]
        if missing:
            raise PrefetchUnavailable(f"prefetch keys {', '.join(missing)} are missing and no FHIR server may be used")
        return {key: prefetch[key] for key in templates}


def _is_missing(prefetch: dict[str, Any], key: str) -> bool:
    """CDS Hooks 2.0: absent or an OperationOutcome is missing; ``null`` means no data."""
    if key not in prefetch:
        return True
    value = prefetch[key]
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"
