"""FactsThread: large calls' facts, one call at a time, in a thread of their own."""

from __future__ import annotations

import threading
import time
from datetime import date

import anyio

from service.cdshooks.off_loop import OFF_LOOP_BYTES, OFF_LOOP_RESOURCES, FactsThread, is_large
from service.fhir import PatientFacts, ValidationMemo, WorkerThreadMemo
from tests.fhir.builders import condition

OA = "239873007"


def test_a_call_is_large_by_resources_or_by_bytes() -> None:
    assert not is_large(resources=OFF_LOOP_RESOURCES, size_bytes=OFF_LOOP_BYTES)
    assert is_large(resources=OFF_LOOP_RESOURCES + 1, size_bytes=0)
    assert is_large(resources=1, size_bytes=OFF_LOOP_BYTES + 1)  # one resource of 3 MB validates for seconds


async def test_large_calls_are_computed_one_at_a_time_off_the_loop_and_remembered() -> None:
    """Two large calls at once only compete for the GIL; the loop's thread never computes them;
    what they learnt is in the memo afterwards."""
    memo = ValidationMemo(100)
    runner = FactsThread(memo)
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

    async with anyio.create_task_group() as group:
        for number in range(3):
            group.start_soon(runner.facts, lambda memo, number=number: compute(memo=memo, number=number))
    assert most == 1
    assert loop_thread not in threads
    assert (len(memo), memo.misses) == (3, 3)
