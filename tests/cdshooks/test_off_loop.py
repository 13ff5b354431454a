"""FactsRunner: large calls' facts, one call at a time, in a thread of their own; a call whose body
alone is large waits for its turn before its body is parsed."""

from __future__ import annotations

import gc
import json
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import date
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

from service.app import create_app
from service.cdshooks import off_loop, routes
from service.cdshooks.off_loop import OFF_LOOP_BYTES, OFF_LOOP_RESOURCES, FactsRunner, is_large
from service.fhir import PatientFacts, ValidationMemo, WorkerThreadMemo
from tests.cdshooks.requests import hook_request
from tests.conftest import SettingsFactory
from tests.fhir.builders import condition
from tests.support.examples import example
from tests.support.fhir_server import FhirTestServer

OA = "239873007"


@pytest.fixture(autouse=True)
def _collector_left_running() -> Iterator[None]:
    """A test here that fails with the collector paused must not leave it paused for later tests."""
    yield
    if not gc.isenabled():
        gc.enable()
        pytest.fail("the collector was left paused")


def test_a_call_is_large_by_resources_or_by_bytes() -> None:
    assert not is_large(resources=OFF_LOOP_RESOURCES, size_bytes=OFF_LOOP_BYTES)
    assert is_large(resources=OFF_LOOP_RESOURCES + 1, size_bytes=0)
    assert is_large(resources=1, size_bytes=OFF_LOOP_BYTES + 1)  # one resource of 3 MB validates for seconds


async def test_large_calls_are_computed_one_at_a_time_off_the_loop_and_remembered() -> None:
    """Two large calls at once only compete for the GIL; the loop's thread never computes them;
    what they learnt is in the memo afterwards."""
    memo = ValidationMemo(100)
    runner = FactsRunner(memo)
    loop_thread = threading.get_ident()
    running = 0
    most = 0
    threads: set[int] = set()
    guard = threading.Lock()

    def compute(*, memo: WorkerThreadMemo, number: int) -> PatientFacts:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        threads.add(threading.get_ident())
        memo.why_invalid(condition(OA, resource_id=f"oa-{number}"))
        time.sleep(0.05)  # long enough for the others to start, were they allowed to
        with guard:
            running -= 1
        return PatientFacts(patient_id=None, today=date(2024, 6, 1), deceased=False, facts={})

    async def large_call(number: int) -> None:
        await runner.compute(
            lambda memo: compute(memo=memo, number=number), resources=OFF_LOOP_RESOURCES + 1, size_bytes=0
        )

    async with anyio.create_task_group() as group:
        for number in range(3):
            group.start_soon(large_call, number)
    assert most == 1
    assert loop_thread not in threads
    assert (len(memo), memo.misses) == (3, 3)


def _no_facts(*, memo: object) -> PatientFacts:
    return PatientFacts(patient_id=None, today=date(2024, 6, 1), deceased=False, facts={})


async def test_a_call_that_is_not_large_is_computed_on_the_loop_with_the_memo() -> None:
    memo = ValidationMemo(100)
    seen: list[tuple[int, object]] = []

    def compute(*, memo: object) -> PatientFacts:
        seen.append((threading.get_ident(), memo))
        return _no_facts(memo=memo)

    async with FactsRunner(memo).call(sent_bytes=OFF_LOOP_BYTES) as call:
        await call.compute(compute, resources=OFF_LOOP_RESOURCES, size_bytes=OFF_LOOP_BYTES)
    assert seen == [(threading.get_ident(), memo)]


async def test_a_call_found_large_only_by_what_it_brought_waits_for_the_turn_and_a_small_one_does_not() -> None:
    """While another call holds the turn (parsing a large body, say), a call of 1,001 small
    resources waits to compute its facts; a typical call is answered at once."""
    runner = FactsRunner(ValidationMemo(100))
    done: list[str] = []

    async def call(name: str, resources: int) -> None:
        async with runner.call(sent_bytes=1000) as call_facts:
            await call_facts.compute(_no_facts, resources=resources, size_bytes=1000)
        done.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await runner.turn.acquire()
            group.start_soon(call, "many small resources", OFF_LOOP_RESOURCES + 1)
            group.start_soon(call, "typical", 36)
            await anyio.sleep(0.05)
            assert done == ["typical"]
            runner.turn.release()
    assert done == ["typical", "many small resources"]


async def test_a_call_with_a_large_body_holds_the_turn_from_entering_to_leaving() -> None:
    """The second waits to enter, so it parses nothing meanwhile; the first computes in its turn
    without waiting for it again."""
    runner = FactsRunner(ValidationMemo(100))
    events: list[str] = []

    async def large_body(name: str) -> None:
        async with runner.call(sent_bytes=OFF_LOOP_BYTES + 1) as call:
            events.append(f"{name} entered")
            await anyio.sleep(0.02)
            await call.compute(_no_facts, resources=1, size_bytes=OFF_LOOP_BYTES + 1)
            events.append(f"{name} computed")

    with anyio.fail_after(5):  # a second wait for the turn would have to wait for the first call to leave
        async with anyio.create_task_group() as group:
            group.start_soon(large_body, "first")
            await anyio.sleep(0.005)
            group.start_soon(large_body, "second")
    assert events == ["first entered", "first computed", "second entered", "second computed"]


async def test_a_turn_pauses_the_collector_and_resumes_it_however_it_ends() -> None:
    """Each collection during a large call walks every container it still holds (parsing 9 MB: 52 ms
    with collections, 37 without); refcounting frees the rest. A collector already paused when the
    turn begins is left paused."""
    runner = FactsRunner(ValidationMemo(100))
    seen: list[bool] = []

    def compute(*, memo: object) -> PatientFacts:
        seen.append(gc.isenabled())
        return _no_facts(memo=memo)

    def fail(*, memo: object) -> PatientFacts:
        raise ValueError("a bug in a rule")

    large = {"resources": OFF_LOOP_RESOURCES + 1, "size_bytes": 0}
    await runner.compute(compute, resources=36, size_bytes=35_000)
    await runner.compute(compute, **large)
    assert seen == [True, False] and gc.isenabled()
    with pytest.raises(ValueError, match="a bug in a rule"):
        await runner.compute(fail, **large)
    assert gc.isenabled()
    gc.disable()
    try:
        await runner.compute(compute, **large)
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_the_worker_thread_keeps_nothing_of_a_call_once_its_facts_are_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    """anyio's worker keeps the function it ran until after the caller has resumed. What that
    function was given (a large call's parsed prefetch) must not live on in it: past the turn's
    end, the first collection walked all of it."""
    given_to_thread: list[object] = []
    run_sync = off_loop.to_thread.run_sync

    async def spying_run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
        given_to_thread.append(function)  # held here as anyio's worker holds it
        return await run_sync(function, *args, **kwargs)

    class Prefetch:
        pass

    def compute(*, memo: object, prefetch: Prefetch) -> PatientFacts:
        return _no_facts(memo=memo)

    monkeypatch.setattr(off_loop.to_thread, "run_sync", spying_run_sync)
    prefetch = Prefetch()
    still_alive = weakref.ref(prefetch)
    runner = FactsRunner(ValidationMemo(100))
    await runner.compute(partial(compute, prefetch=prefetch), resources=OFF_LOOP_RESOURCES + 1, size_bytes=0)
    del prefetch
    assert len(given_to_thread) == 1 and still_alive() is None


EXAMPLE = example("patient-view-request.json")


def _large_body() -> bytes:
    """The example call, over OFF_LOOP_BYTES with a note under a key no template declares."""
    prefetch = {**EXAMPLE["prefetch"], "padding": _padding()}
    return json.dumps({**EXAMPLE, "hookInstance": str(uuid.uuid4()), "prefetch": prefetch}).encode()


def _padding() -> dict[str, Any]:
    """A resource of over OFF_LOOP_BYTES, for a key no template declares: a body that is large by itself."""
    return {"resourceType": "Basic", "id": "padding", "code": {"text": "x" * (OFF_LOOP_BYTES + 1)}}


async def test_concurrent_calls_with_large_bodies_are_parsed_one_after_another(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parsed prefetch takes about seven times its bytes: calls waiting for their turn hold their
    raw bodies, not their parsed ones, so peak memory does not grow with concurrent calls times that."""
    events: list[str] = []

    def record(step: str) -> None:
        if step == "facts":
            time.sleep(0.05)  # in the worker thread: the others would parse meanwhile, were they let in
        events.append(step)

    _spy_on_parse_and_facts(monkeypatch, record)
    async with _client(make_settings) as post:

        async def post_large_body() -> None:
            response = await post(_large_body())
            assert response.status_code == 200, response.text

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(post_large_body)
    assert events == ["parse", "facts"] * 3


async def test_a_call_with_a_large_body_is_parsed_and_computed_with_the_collector_paused(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From before its body is parsed to its facts; a typical call after it finds the collector running."""
    seen: list[tuple[str, bool]] = []
    _spy_on_parse_and_facts(monkeypatch, lambda step: seen.append((step, gc.isenabled())))
    async with _client(make_settings) as post:
        for body in (_large_body(), json.dumps(EXAMPLE).encode()):
            response = await post(body)
            assert response.status_code == 200, response.text
            assert gc.isenabled()
    assert seen == [("parse", False), ("facts", False), ("parse", True), ("facts", True)]


async def test_a_call_with_a_large_body_lets_collection_run_while_it_waits_for_its_fhir_server(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, fhir_server: FhirTestServer
) -> None:
    """Other calls go on meanwhile, and those whose fetch fails leave cycles: a fetch may last
    CDS_FHIR_TIMEOUT_SECONDS, too long to leave them uncollected."""
    seen: list[tuple[str, bool]] = []
    _spy_on_parse_and_facts(monkeypatch, lambda step: seen.append((step, gc.isenabled())))
    fhir_server.behave(delay_seconds=0.3)
    body = hook_request(
        patient_id=fhir_server.data.patient_id("Kozey"),
        prefetch={"padding": _padding()},  # every declared key missing: fetched
        fhirServer=fhir_server.base_url,
        fhirAuthorization={"access_token": "t0k3n", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"},
    )
    responses: list[httpx.Response] = []
    async with _client(make_settings, fhir_server_allowlist=[fhir_server.base_url], fhir_timeout_seconds=5.0) as post:

        async def call() -> None:
            responses.append(await post(json.dumps(body).encode()))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                while not fhir_server.requests:
                    await anyio.sleep(0.01)
                seen.append(("fetch", gc.isenabled()))  # the server answers after 0.3 s
    assert responses[0].status_code == 200, responses[0].text
    assert seen == [("parse", False), ("fetch", True), ("facts", False)]
    assert gc.isenabled()


async def test_a_large_call_that_fails_gives_the_turn_back(make_settings: SettingsFactory) -> None:
    """Every way a call with a large body can fail inside its turn (bad JSON, not a hook request, a
    hook the service does not serve, a Host no link can start with) leaves the turn to the next,
    and the collector running."""
    good = _large_body()
    failing = [
        good[:-1],
        good.replace(b'"hookInstance"', b'"hookInstanceX"', 1),
        good.replace(b'"patient-view"', b'"order-select"', 1),
    ]
    async with _client(make_settings) as post:
        with anyio.fail_after(30):  # a turn kept by a failed call leaves the last one waiting
            for body in failing:
                assert (await post(body)).status_code == 400
                assert gc.isenabled()  # the turn's pause of the collector ended with it
            bad_host = await post(good, host="bad host")
            assert bad_host.status_code == 400, bad_host.text
            assert gc.isenabled()
            assert (await post(good)).status_code == 200


Post = Callable[..., Awaitable[httpx.Response]]


@asynccontextmanager
async def _client(make_settings: SettingsFactory, **settings: Any) -> AsyncIterator[Post]:
    """The app, lifespan running; ``post(body, **headers)`` calls back-knee-risk-factors with it."""
    app = create_app(make_settings(**settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:

            async def post(body: bytes, **headers: str) -> httpx.Response:
                headers = {"content-type": "application/json", **headers}
                return await client.post("/cds-services/back-knee-risk-factors", content=body, headers=headers)

            yield post


def _spy_on_parse_and_facts(monkeypatch: pytest.MonkeyPatch, record: Callable[[str], object]) -> None:
    """The route's body parse and facts, each calling ``record("parse")`` or ``record("facts")`` first."""
    parse, facts = routes.parse_json_body, routes.patient_facts

    def parse_json_body(body: bytes, **kwargs: Any) -> Any:
        record("parse")
        return parse(body, **kwargs)

    def patient_facts(*args: Any, **kwargs: Any) -> Any:
        record("facts")
        return facts(*args, **kwargs)

    monkeypatch.setattr(routes, "parse_json_body", parse_json_body)
    monkeypatch.setattr(routes, "patient_facts", patient_facts)
