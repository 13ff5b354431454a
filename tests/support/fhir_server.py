"""A real FHIR R4 server on loopback for tests: the shared fixtures over HTTP, with failure switches.

Why: the service's FHIR fallback (CDS Hooks 2.0 section 3) must be tested against a server that
really speaks HTTP (connections, timeouts, resets, redirects, paging), not a mock. This is a
small Starlette app run by uvicorn on ``127.0.0.1`` with port 0, in a thread, once per test
session (fixtures ``fhir_server_session`` and, per test, ``fhir_server`` in ``tests/conftest.py``).

Data: every resource in the shared fixtures (``tests/support/shared.py``; Synthea Bundles unpacked), e.g.
Patient ``example`` (HL7 examples: BMI, weight, height, FamilyMemberHistory) or the Synthea
patients (``FhirData.patient_id("Kozey")``). Tests may add resources with :meth:`FhirTestServer.put`.

Endpoints, under ``{base_url}`` = ``http://127.0.0.1:<port>/<tag>/fhir``:
- ``GET /fhir/{type}/{id}``: read (404 with an OperationOutcome when unknown);
- ``GET /fhir/{type}?patient=<id>`` (or ``subject=``): search by patient, any type with
  ``subject`` or ``patient``; ``code=<system>|<code>,...`` filters on ``code.coding``;
  ``_count`` pages the searchset (``link[next]`` with an opaque ``_offset``);
- anything else under ``{root}`` = ``http://127.0.0.1:<port>/<tag>``: 404, and recorded, so a
  test can prove a path (``{root}/elsewhere``) was never asked for.

``<tag>`` changes at every :meth:`FhirTestServer.reset` (so for every test): a request that a
previous test's cancelled fetch left in flight arrives under the old tag and lands in
:attr:`FhirTestServer.stray`, never in this test's :attr:`FhirTestServer.requests`.

Every request is recorded (:attr:`FhirTestServer.requests`: method, path without the tag,
e.g. ``/fhir/Patient/example``, query, Authorization header). Per-test switches (:class:`Behaviour`, set with :meth:`FhirTestServer.behave`, cleared
by :meth:`FhirTestServer.reset`):

    require_token     401 unless ``Authorization: Bearer <require_token>``
    status            answer every request with this status and an OperationOutcome
    delay_seconds     sleep this long before answering (slow server, or a stall)
    reset_connection  send headers, then drop the connection mid-body
    garbage_json      200 with a body that is not JSON
    operation_outcome 200 with an OperationOutcome instead of the data
    redirect_to       302 to this URL (a server that tries to send the client elsewhere)
    page_size         page searchsets with this many entries per page
    paginate_forever  every page links to a further (empty) page
    next_link_base    next links point at this base URL instead of this server
    only_types        apply the switches only to requests for these resource types
    answer            (body, headers): 200 with exactly these bytes and headers (an encoded body, say)

:meth:`FhirTestServer.behave_for` sets switches for some resource types only, on top of
:meth:`FhirTestServer.behave` (e.g. Conditions answer 500 while Observations are slow).

Use from tests::

    def test_x(fhir_server: FhirTestServer) -> None:
        fhir_server.behave(require_token="t0k3n", page_size=2)
        ... call the service with fhirServer=fhir_server.base_url ...
        assert all(r.authorization == "Bearer t0k3n" for r in fhir_server.requests)

Outside pytest (benchmarks): ``with serve_in_thread(FhirTestServer(FhirData.load())) as server: ...``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.loopback_server import serve_on_loopback
from tests.support.shared import SHARED_FIXTURES

__all__ = ["Behaviour", "FhirData", "FhirTestServer", "RecordedRequest", "serve_in_thread"]

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    authorization: str | None

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def resource_type(self) -> str | None:
        parts = self.path.split("/")
        return parts[2] if len(parts) > 2 and parts[1] == "fhir" else None


@dataclass(frozen=True)
class Behaviour:
    """Per-test switches; see the module docstring. The defaults answer like a healthy server."""

    require_token: str | None = None
    status: int | None = None
    delay_seconds: float = 0.0
    reset_connection: bool = False
    garbage_json: bool = False
    operation_outcome: bool = False
    redirect_to: str | None = None
    page_size: int | None = None
    paginate_forever: bool = False
    next_link_base: str | None = None
    only_types: frozenset[str] | None = None
    answer: tuple[bytes, dict[str, str]] | None = None  # this body and these headers, verbatim


@dataclass
class FhirData:
    """Resources by type and id, and by (type, patient id) for searches."""

    by_id: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    by_patient: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path = SHARED_FIXTURES) -> FhirData:
        data = cls()
        for path in sorted(root.rglob("*.json")):
            document = orjson.loads(path.read_bytes())
            if document.get("resourceType") == "Bundle":
                for entry in document.get("entry", []):
                    data.add(entry["resource"])
            else:
                data.add(document)
        return data

    def add(self, resource: dict[str, Any]) -> None:
        kind, rid = resource["resourceType"], resource["id"]
        self.by_id[(kind, rid)] = resource
        patient = _patient_of(resource)
        if patient is not None:
            self.by_patient.setdefault((kind, patient), []).append(resource)

    def patient_id(self, family: str) -> str:
        """The id of the (fixture) Patient whose first family name is ``family``."""
        for (kind, rid), resource in self.by_id.items():
            names = resource.get("name") or [{}]
            if kind == "Patient" and names[0].get("family") == family:
                return rid
        raise KeyError(f"no fixture Patient with family name {family!r}")

    def search(self, kind: str, patient: str | None) -> list[dict[str, Any]]:
        if patient is None:
            return [resource for (k, _), resource in self.by_id.items() if k == kind]
        return list(self.by_patient.get((kind, patient), []))


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in ("subject", "patient"):
        reference = (resource.get(name) or {}).get("reference")
        if isinstance(reference, str):
            for prefix in ("Patient/", "urn:uuid:"):
                if reference.startswith(prefix):
                    return reference[len(prefix) :]
    return None


def _outcome(status: int, text: str) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]}
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON)


class _DropMidBody:
    """An ASGI response that promises a body and hangs up after the headers (a reset connection)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10000")]})
        await send({"type": "http.response.body", "body": b'{"resourceType": "Bun', "more_body": True})
        # Returning now makes uvicorn close the transport: the client sees the connection break off.


class FhirTestServer:
    """The loopback FHIR server; construct once, :meth:`start`, :meth:`reset` between tests."""

    def __init__(self, data: FhirData):
        self.data = data
        self.behaviour = Behaviour()
        self._by_type: dict[str, Behaviour] = {}
        self._extra = FhirData()
        self._requests: list[RecordedRequest] = []
        self._stray: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._tags = itertools.count(1)
        self.tag = "t0"
        self.port = 0
        self.app = Starlette(
            routes=[
                Route("/{tag}/fhir/{kind}/{rid}", self._read),
                Route("/{tag}/fhir/{kind}", self._search),
                Route("/{rest:path}", self._elsewhere),
            ]
        )

    # --- for tests ------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> str:
        """This test's root on the server; the FHIR base is ``{root}/fhir``."""
        return f"{self.origin}/{self.tag}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/fhir"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests under this test's tag, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def stray(self) -> list[RecordedRequest]:
        """Requests under an older tag (left in flight by earlier tests) or under none."""
        with self._lock:
            return list(self._stray)

    def behave(self, **switches: Any) -> None:
        """Replace the switches for this test (``only_types`` may be any iterable of type names)."""
        if switches.get("only_types") is not None:
            switches["only_types"] = frozenset(switches["only_types"])
        self.behaviour = Behaviour(**switches)

    def behave_for(self, *kinds: str, **switches: Any) -> None:
        """Switches for requests about these resource types only; they override :meth:`behave`."""
        for kind in kinds:
            self._by_type[kind] = Behaviour(**switches)

    def put(self, resource: dict[str, Any]) -> None:
        """Serve an extra resource until the next :meth:`reset`."""
        self._extra.add(resource)

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self._by_type = {}
        self._extra = FhirData()
        with self._lock:
            self._requests.clear()
            self._stray.clear()
            self.tag = f"t{next(self._tags)}"

    # --- endpoints ------------------------------------------------------------------------

    async def _read(self, request: Request) -> Any:
        kind, rid = request.path_params["kind"], request.path_params["rid"]
        switched = await self._switches(request, kind)
        if switched is not None:
            return switched
        resource = self._extra.by_id.get((kind, rid)) or self.data.by_id.get((kind, rid))
        if resource is None:
            return _outcome(404, f"{kind}/{rid} is not known")
        return Response(orjson.dumps(resource), media_type=FHIR_JSON)

    async def _search(self, request: Request) -> Any:
        kind = request.path_params["kind"]
        switched = await self._switches(request, kind)
        if switched is not None:
            return switched
        params = request.query_params
        patient = params.get("patient") or params.get("subject")
        if patient is not None:
            patient = patient.removeprefix("Patient/")
        found = self._extra.search(kind, patient) + self.data.search(kind, patient)
        if "code" in params:
            wanted = {token.strip() for token in params["code"].split(",") if token.strip()}
            found = [resource for resource in found if _has_code(resource, wanted)]
        return self._page(request, kind, found)

    async def _elsewhere(self, request: Request) -> Any:
        self._record(request)
        return _outcome(404, f"no such endpoint {request.url.path}")

    # --- behaviour ------------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        _, tag, *rest = request.url.path.split("/")
        with self._lock:
            current = tag == self.tag
            recorded = RecordedRequest(
                method=request.method,
                path="/" + "/".join(rest) if current else request.url.path,
                query=request.url.query,
                authorization=request.headers.get("authorization"),
            )
            (self._requests if current else self._stray).append(recorded)

    async def _switches(self, request: Request, kind: str) -> Any:
        """The response a switch dictates, or None to answer normally."""
        self._record(request)
        b = self._behaviour_for(kind)
        if b.delay_seconds:
            await asyncio.sleep(b.delay_seconds)
        if b.reset_connection:
            return _DropMidBody()
        if b.require_token is not None and request.headers.get("authorization") != f"Bearer {b.require_token}":
            return _outcome(401, "a valid bearer token is required")
        if b.status is not None:
            return _outcome(b.status, f"switched to answer {b.status}")
        if b.redirect_to is not None:
            return Response(status_code=302, headers={"location": b.redirect_to})
        if b.garbage_json:
            return Response(b"<html>this is not {json", media_type=FHIR_JSON)
        if b.operation_outcome:
            return _outcome(200, "switched to answer an OperationOutcome")
        if b.answer is not None:
            body, headers = b.answer
            return Response(body, headers=headers, media_type=FHIR_JSON)
        return None

    def _behaviour_for(self, kind: str) -> Behaviour:
        if kind in self._by_type:
            return self._by_type[kind]
        general = self.behaviour
        return general if general.only_types is None or kind in general.only_types else Behaviour()

    def _page(self, request: Request, kind: str, found: list[dict[str, Any]]) -> Response:
        params = request.query_params
        b = self._behaviour_for(kind)
        size = b.page_size or (int(params["_count"]) if params.get("_count", "").isdigit() else None)
        offset = int(params["_offset"]) if params.get("_offset", "").isdigit() else 0
        page = found[offset : offset + size] if size else found[offset:]
        here = f"{self.origin}/{request.path_params['tag']}/fhir"
        base = b.next_link_base or here
        links = [{"relation": "self", "url": f"{here}/{kind}?{request.url.query}"}]
        more = size is not None and (offset + size < len(found) or b.paginate_forever)
        if more and size is not None:
            query = [(k, v) for k, v in params.multi_items() if k != "_offset"] + [("_offset", str(offset + size))]
            links.append({"relation": "next", "url": f"{base}/{kind}?{urlencode(query)}"})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links}
        if page:
            bundle["entry"] = [
                {"fullUrl": f"{here}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page
            ]
        return Response(orjson.dumps(bundle), media_type=FHIR_JSON)


def _has_code(resource: dict[str, Any], wanted: set[str]) -> bool:
    for coding in (resource.get("code") or {}).get("coding") or []:
        system, code = coding.get("system", ""), coding.get("code", "")
        if f"{system}|{code}" in wanted or code in wanted or f"|{code}" in wanted:
            return True
    return False


@contextmanager
def serve_in_thread(server: FhirTestServer) -> Iterator[FhirTestServer]:
    """Run ``server`` on 127.0.0.1 (a free port) in a daemon thread until the block ends."""
    with serve_on_loopback(server.app, name="fhir-test-server") as port:
        server.port = port
        yield server
