"""Where a hook call's facts are computed: on the event loop, or for a large call in a worker thread.

Validating what a call brought takes time in proportion to what validation reads: 15,000 distinct
Conditions (5 MB) took 4 s, and one Condition with 110,000 codings 3.4 s. On the event loop that
held every other request of the worker, liveness probes included, long enough for an orchestrator
to restart a healthy service.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial

from anyio import CapacityLimiter, Lock, to_thread

from service.fhir import PatientFacts, ValidationMemo

__all__ = ["OFF_LOOP_BYTES", "OFF_LOOP_RESOURCES", "CallFacts", "FactsRunner", "is_large"]

# A call bringing more than either (sent and fetched together) is large. Up to both, its facts take
# about 0.35 s at most on the slowest machine measured (one Condition of 1 MiB of codings, by the
# 1.5 s of 4.6 MB; realistic data of 1 MiB takes 15 ms), and stay on the loop. A typical call's
# facts (36 resources, 35 KB: 0.3 ms) cost less than the hop to a thread and back (0.4 ms). In
# `make bench` the 1,000-resource sweep (904 KiB) once took 26 % more CPU a call in the thread; since
# the thread lets go of the call's data (_LetGoOnce) and collection pauses for the turn, the same
# (7.4 and 7.3 ms, OFF_LOOP_RESOURCES patched to 999: bench/results/session17-sweep1000-on-*).
OFF_LOOP_RESOURCES = 1_000
OFF_LOOP_BYTES = 1024 * 1024


def is_large(*, resources: int, size_bytes: int) -> bool:
    """Whether a call's facts are computed in the worker thread."""
    return resources > OFF_LOOP_RESOURCES or size_bytes > OFF_LOOP_BYTES


class FactsRunner:
    """Computes each call's facts with the validation memo: on the loop, or for a large call in a
    worker thread, one call at a time.

    One at a time (``turn``): two large calls computed at once only compete for the GIL (16
    together took 17 % longer than one after another). Its own limiter: anyio's default one (40
    threads) runs the database calls, which typical calls and /health/ready wait for, and large
    calls must not take those threads. Built in the app's lifespan (a lock belongs to its event loop).

    The cyclic garbage collector is paused while a call has its turn, except while it waits for a
    FHIR server (``collecting``). A large call builds hundreds of thousands of containers that all
    live until it ends (parsed JSON, records), and each collection meanwhile walks every one still
    young: parsing 9 MB took 52 ms with collections and 37 ms without, and the whole call (make
    bench, 10,000 resources) 132 ms and 105. Refcounting still frees everything else. Cycles made
    meanwhile by other calls wait until the turn's holder has parsed or computed: those that bring
    their prefetch make almost none (one collection after 2,000 typical calls found 78 objects),
    those whose fetch fails up to 90 KiB each. One turn at a time, so one pause; a collector
    already paused when a turn begins stays paused.
    """

    def __init__(self, memo: ValidationMemo) -> None:
        self._memo = memo
        self.turn = Lock()  # held by the one large call whose facts are being computed (or parsed, see call())
        self._limiter = CapacityLimiter(1)  # the turn already lets one call at a time in: a second guard, not the first
        self._resume_collection = False  # whether the turn's holder paused a running collector

    async def take_turn(self) -> None:
        await self.turn.acquire()
        self._resume_collection = gc.isenabled()  # a collector already paused stays paused
        gc.disable()

    def give_turn(self) -> None:
        if self._resume_collection:
            gc.enable()
        self.turn.release()

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Collection runs meanwhile if the turn paused it: for the turn's holder, while it waits."""
        if not self._resume_collection:
            yield
            return
        gc.enable()
        try:
            yield
        finally:
            gc.disable()

    def call(self, *, sent_bytes: int) -> CallFacts:
        """Where one hook call's facts are computed, entered (``async with``) before its body is parsed.

        A call whose body alone makes it large waits there for its turn, holding its raw bytes: a
        parsed prefetch takes about seven times its bytes (4.3 MB of Conditions, 29 MB), and 16 such
        calls waiting parsed took the worker to 580 MB. It keeps the turn until its facts are done,
        through any fetch from its FHIR server: other large calls then wait for that too, at most
        CDS_FHIR_TIMEOUT_SECONDS more. A body that large rarely leaves prefetch to fetch, and giving
        the turn up meanwhile would leave the call waiting for it again, parsed.
        """
        return CallFacts(self, large_body=is_large(resources=0, size_bytes=sent_bytes))

    async def compute(self, facts_of: Callable[..., PatientFacts], *, resources: int, size_bytes: int) -> PatientFacts:
        """``facts_of(memo=...)`` for a call that does not hold the turn and brought ``resources`` and
        ``size_bytes`` (sent and fetched): on the loop unless that is large. A call found large only
        now (many small resources, or a large fetch) waits for its turn here."""
        if not is_large(resources=resources, size_bytes=size_bytes):
            return facts_of(memo=self._memo)
        await self.take_turn()
        try:
            return await self.in_thread(facts_of)
        finally:
            self.give_turn()

    async def in_thread(self, facts_of: Callable[..., PatientFacts]) -> PatientFacts:
        """``facts_of(memo=...)`` in the thread, in the caller's turn; the validation outcomes it learnt
        are added to the memo afterwards, back on the loop's thread, the only one that changes it."""
        learnt = self._memo.for_worker_thread()
        facts = await to_thread.run_sync(_LetGoOnce(partial(facts_of, memo=learnt)), limiter=self._limiter)
        self._memo.remember(learnt)
        return facts


class _LetGoOnce:
    """A function for the worker thread that lets go of what it holds once called. anyio's worker
    keeps the function it ran until after the caller has resumed: holding a large call's prefetch
    there, it kept the parsed data alive past the turn's end, so that the first collection after it
    walked all of it (34 ms of a 9 MB call's 130, in make bench). Let go, the call frees it before."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[[], PatientFacts]) -> None:
        self._call = call

    def __call__(self) -> PatientFacts:
        call = self._call
        del self._call  # a second call is an AttributeError
        return call()


_NOTHING = nullcontext()  # reusable: typical calls need not build one each


class CallFacts:
    """One call's way to its facts (``FactsRunner.call``): inside ``async with``, a call with a large
    body holds the turn. A plain class, not a generator context manager: typical calls pay for it too."""

    __slots__ = ("_large_body", "_runner")

    def __init__(self, runner: FactsRunner, *, large_body: bool) -> None:
        self._runner = runner
        self._large_body = large_body

    async def __aenter__(self) -> CallFacts:
        if self._large_body:
            await self._runner.take_turn()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._large_body:
            self._runner.give_turn()

    def while_fetching(self) -> AbstractContextManager[None]:
        """Where the call waits for its FHIR server (``Gatherer.gather``): a call with a large body
        lets collection run meanwhile. Other calls go on meanwhile, and a call whose fetch fails or
        times out leaves cycles (tracebacks, httpx's requests: 90 KiB a call); a fetch may last
        CDS_FHIR_TIMEOUT_SECONDS. Resuming costs one walk of the parsed body, and a body that
        large rarely leaves prefetch to fetch."""
        return self._runner.collecting() if self._large_body else _NOTHING

    async def compute(self, facts_of: Callable[..., PatientFacts], *, resources: int, size_bytes: int) -> PatientFacts:
        """As ``FactsRunner.compute``; a call with a large body is large whatever it brought, and has its turn."""
        if self._large_body:
            return await self._runner.in_thread(facts_of)
        return await self._runner.compute(facts_of, resources=resources, size_bytes=size_bytes)
