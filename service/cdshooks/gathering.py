"""Data gathering: the prefetch a client sent, completed from its FHIR server when that is allowed.

interface.md decision 4: every declared prefetch key is required. A key that is absent or holds
an OperationOutcome is fetched from ``fhirServer``, but only when that server is on
``CDS_FHIR_SERVER_ALLOWLIST`` and ``fhirAuthorization`` came with the request; otherwise, or
when the server fails, the call ends in 412 naming each key and why. Paginated prefetch
Bundles (``link[next]``, allowed in CDS Hooks 2.0) are completed the same way; when fetching is
not allowed, their first page is used as sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from service.cdshooks.bundles import count_resources
from service.cdshooks.capped_body import ByteBudget
from service.cdshooks.errors import PayloadTooLarge, PrefetchUnavailable
from service.cdshooks.fhir_allowlist import ServerAllowlist, ServerUrl, UrlRefused, parse_server_url
from service.cdshooks.fhir_server import FetchSlots, FhirServerError, FhirServerSession, ResourceBudget
from service.cdshooks.models import HookRequest
from service.cdshooks.prefetch import TemplateError, classify_prefetch, render_template
from service.metrics import Metrics

__all__ = ["Gathered", "Gatherer"]

log = logging.getLogger("service.cdshooks.gathering")

_ABANDONED = "fetching was abandoned when another key failed"


@dataclass(frozen=True, slots=True)
class Gathered:
    """What a call's rules read: ``values``, every declared prefetch key -> a resource, a searchset
    Bundle, or None (no data). With the body's size, ``resources`` (how many the call brought: sent,
    undeclared keys included, and fetched) and ``fetched_bytes`` tell how long reading them may take."""

    values: dict[str, Any]
    resources: int
    fetched_bytes: int = 0


class Gatherer:
    """Turns a hook request and a service's prefetch templates into the data its rules read.

    Built once per app (it holds the shared ``httpx.AsyncClient``); holds nothing per request.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        metrics: Metrics,
        allowlist: ServerAllowlist | Iterable[str],
        timeout_seconds: float,
        page_limit: int,
        max_resources: int,
        max_bytes: int,
        max_depth: int,
    ):
        self._client = client
        self._metrics = metrics
        self._allowlist = allowlist if isinstance(allowlist, ServerAllowlist) else ServerAllowlist(allowlist)
        self._timeout = timeout_seconds
        self._page_limit = page_limit
        self._max_resources = max_resources
        self._max_bytes = max_bytes  # fetched for one request, all keys and pages together
        self._max_depth = max_depth
        self._slots = FetchSlots()

    async def gather(
        self, request: HookRequest, templates: Mapping[str, str], *, while_fetching: AbstractContextManager[object] = nullcontext()
    ) -> Gathered:
        """Every declared prefetch key -> a resource, a searchset Bundle, or None (no data), and how
        much the call brought (``Gathered``). ``while_fetching`` is entered only while the call
        waits for its FHIR server (``CallFacts.while_fetching``).

        Raises ``PayloadTooLarge`` (413) when the prefetch holds more than
        ``CDS_MAX_PREFETCH_RESOURCES`` resources, and ``PrefetchUnavailable`` (412) when a key
        can be had neither from the prefetch nor from an allowed FHIR server.
        """
        prefetch = request.prefetch or {}
        sent = count_resources(prefetch.values())
        if sent > self._max_resources:
            raise PayloadTooLarge(
                f"the prefetch holds {sent} resources, more than the limit of {self._max_resources} "
                "(CDS_MAX_PREFETCH_RESOURCES)"
            )
        report = classify_prefetch(prefetch, templates)
        if not report.missing and not report.paged:
            return Gathered(dict(report.present), sent)
        access = self._access(request)
        if isinstance(access, str):
            if report.missing:
                raise self._unavailable(request, {key: access for key in report.missing}, report.missing)
            log.info(
                "paginated prefetch used as sent (first page only)",
                extra={"fields": {"hookInstance": request.hookInstance, "keys": list(report.paged), "reason": access}},
            )
            return Gathered(dict(report.present), sent)

        queries: dict[str, str] = {}
        unrenderable: dict[str, str] = {}
        for key in report.missing:
            try:
                queries[key] = render_template(templates[key], request.context)
            except TemplateError as exc:
                unrenderable[key] = f"its template cannot be filled: {exc}"
        if unrenderable:
            raise self._unavailable(request, unrenderable, report.missing)

        server, token = access
        session = FhirServerSession(
            client=self._client,
            server=server,
            token=token,
            deadline=asyncio.get_running_loop().time() + self._timeout,
            budget_seconds=self._timeout,
            page_limit=self._page_limit,
            max_depth=self._max_depth,
            bytes=ByteBudget(self._max_bytes),
            resources=ResourceBudget(self._max_resources, used=sent),
            metrics=self._metrics,
            slots=self._slots,
        )
        log.info(
            "fetching prefetch from the FHIR server",
            extra={
                "fields": {
                    "hookInstance": request.hookInstance,
                    "server": server.base,
                    "missing": list(queries),
                    "paged": list(report.paged),
                }
            },
        )
        jobs: dict[str, Coroutine[Any, Any, dict[str, Any] | None]] = {
            key: session.fetch(query, key=key) for key, query in queries.items()
        }
        for key in report.paged:
            if (bundle := report.present[key]) is not None:  # always: only Bundles are paged
                jobs[key] = session.complete(bundle, key=key)
        with while_fetching:
            fetched, failures = await _run_all(jobs)
        if failures:
            states = {**report.missing, **{key: "has more pages" for key in report.paged}}
            raise self._unavailable(request, failures, states)
        gathered = {**report.present, **fetched}
        return Gathered({key: gathered[key] for key in templates}, session.resources.used, session.bytes.used)

    def _access(self, request: HookRequest) -> tuple[ServerUrl, str] | str:
        """The request's fhirServer and token when the service may call it, else why not (for the 412)."""
        if request.fhirServer is None:
            if request.fhirAuthorization is None:
                return "no fhirServer or fhirAuthorization was sent"
            return "no fhirServer was sent"
        try:
            server = parse_server_url(request.fhirServer)
        except UrlRefused as exc:
            return f"fhirServer is not a URL the service may call: {exc}"
        if not self._allowlist.admits(server):
            empty = ", which is empty" if not self._allowlist else ""
            return f"fhirServer {server.base} is not in CDS_FHIR_SERVER_ALLOWLIST{empty}"
        if request.fhirAuthorization is None:
            return "no fhirAuthorization was sent"
        expires_in = request.fhirAuthorization.expires_in
        if expires_in is not None and expires_in <= 0:
            return f"the fhirAuthorization token has expired (expires_in {expires_in})"
        return server, request.fhirAuthorization.access_token

    def _unavailable(self, request: HookRequest, reasons: Mapping[str, str], states: Mapping[str, str]) -> PrefetchUnavailable:
        message = _describe(reasons, states)
        log.warning(
            "required prefetch unavailable",
            extra={"fields": {"hookInstance": request.hookInstance, "keys": list(reasons), "reason": message}},
        )
        return PrefetchUnavailable(message)


async def _run_all(
    jobs: Mapping[str, Coroutine[Any, Any, dict[str, Any] | None]],
) -> tuple[dict[str, dict[str, Any] | None], dict[str, str]]:
    """Run the keys' fetches concurrently; on the first failure abandon the rest (the answer is 412 anyway).

    Only :class:`FhirServerError` is a key's failure; any other exception is a bug and propagates.
    """
    tasks = {key: asyncio.create_task(job) for key, job in jobs.items()}
    try:
        await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    results: dict[str, dict[str, Any] | None] = {}
    failures: dict[str, str] = {}
    for key, task in tasks.items():
        if task.cancelled():
            failures[key] = _ABANDONED
        elif isinstance(error := task.exception(), FhirServerError):
            failures[key] = error.reason
        elif error is not None:
            raise error
        else:
            results[key] = task.result()
    return results, failures


def _describe(reasons: Mapping[str, str], states: Mapping[str, str]) -> str:
    """``prefetch key 'conditions' is missing and <reason>``, grouped by reason, failures first."""
    groups: dict[str, list[str]] = {}
    for key, reason in sorted(reasons.items(), key=lambda item: item[1] == _ABANDONED):
        groups.setdefault(reason, []).append(key)
    clauses = []
    for reason, keys in groups.items():
        if len(keys) == 1:
            clauses.append(f"prefetch key '{keys[0]}' {states.get(keys[0], 'is missing')} and {reason}")
        else:
            named = ", ".join(_name_with_state(key, states.get(key, "is missing")) for key in keys)
            clauses.append(f"prefetch keys {named} are missing and {reason}")
    return "; ".join(clauses)


def _name_with_state(key: str, state: str) -> str:
    return f"'{key}'" if state == "is missing" else f"'{key}' ({state})"
