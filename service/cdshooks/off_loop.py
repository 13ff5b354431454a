"""Where a hook call's facts are computed: on the event loop, or for a large call in a worker thread.

Validating what a call brought takes time in proportion to what validation reads: 15,000 distinct
Conditions (5 MB) took 4 s, and one Condition with 110,000 codings 3.4 s. On the event loop that
held every other request of the worker, liveness probes included, long enough for an orchestrator
to restart a healthy service.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from anyio import CapacityLimiter, to_thread

from service.fhir import PatientFacts, ValidationMemo

__all__ = ["OFF_LOOP_BYTES", "OFF_LOOP_RESOURCES", "FactsThread", "is_large"]

# A call bringing more than either (sent and fetched together) is large. Up to both, its facts take
# about 0.35 s at most on the slowest machine measured (one Condition of 1 MiB of codings, by the
# 1.5 s of 4.6 MB; realistic data of 1 MiB takes 15 ms), and stay on the loop: the thread costs CPU. A typical call's facts
# (36 resources, 35 KB: 0.3 ms) cost less than the hop to a thread and back (0.4 ms), and in
# `make bench` the 1,000-resource sweep (904 KiB) took 26 % more CPU a call when sent to it.
OFF_LOOP_RESOURCES = 1_000
OFF_LOOP_BYTES = 1024 * 1024


def is_large(*, resources: int, size_bytes: int) -> bool:
    """Whether a call's facts are computed in the worker thread."""
    return resources > OFF_LOOP_RESOURCES or size_bytes > OFF_LOOP_BYTES


class FactsThread:
    """Computes large calls' facts in a worker thread, one call at a time.

    One at a time: two large calls computed at once only compete for the GIL (16 together took 17 %
    longer than one after another). Its own limiter: anyio's default one (40 threads) runs the
    database calls, which typical calls and /health/ready wait for, and large calls must not take
    those threads. Built in the app's lifespan (a limiter belongs to its event loop).
    """

    def __init__(self, memo: ValidationMemo) -> None:
        self._memo = memo
        self._limiter = CapacityLimiter(1)

    async def facts(self, compute: Callable[..., PatientFacts]) -> PatientFacts:
        """``compute(memo=...)`` in the thread; the validation outcomes it learnt are added to the
        memo afterwards, back on the loop's thread, the only one that changes the memo."""
        learnt = self._memo.for_worker_thread()
        facts = await to_thread.run_sync(partial(compute, memo=learnt), limiter=self._limiter)
        self._memo.remember(learnt)
        return facts
