"""``make soak``: a steady stream of mixed hook and feedback calls against a real loopback server.

For ``--seconds`` (60) at ``--rate`` requests per second (20), open loop (a request is started on
every tick whether or not earlier ones have finished, up to ``--max-in-flight``): hook calls for
the shared Synthea patients across the three services, and, on every ``--feedback-every``-th
tick, feedback on a card uuid taken from an earlier hook response (``overridden`` with one of the
card's own non-suppressing override reasons, or ``accepted`` with its first suggestion's uuid).

Then the server is stopped (which flushes its audit queue) and the database is read directly:
every feedback item the server acknowledged with 200 must be in the ``feedback`` table, and every
answered hook call in ``invocation`` with its cards in ``card_issued``. A 503 on feedback is
retried (as the contract asks of clients); ``--kill-db-sessions`` (PostgreSQL) ends the service's
database sessions three times during the run. Prints errors (must be 0),
latency percentiles (p50, p95, p99, max) per kind, and the database check; exits 1 on any error,
any missing row or a server traceback. Bounded in count (rate x seconds) and time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from robustness.served import serve, service_env, upgrade_database
from robustness.traffic import SERVICES, PatientData, hook_body, load_patients

__all__ = ["main"]

# Override reasons that suppress a rule (interface.md decision 7); the soak avoids them so later
# calls keep producing cards to give feedback on.
_SUPPRESSING = frozenset({"already-addressed", "patient-declined"})
_DRAIN_SECONDS = 30.0
_FEEDBACK_ATTEMPTS = 10


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"hook": [], "feedback": []})
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cards_seen: list[dict[str, Any]] = field(default_factory=list)
    cards_returned: set[str] = field(default_factory=set)
    hook_answered: int = 0
    feedback_acknowledged: set[str] = field(default_factory=set)
    feedback_sent: set[str] = field(default_factory=set)
    skipped_ticks: int = 0
    feedback_retries: int = 0

    async def timed(self, kind: str, *, label: str, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
        """``send()`` timed and its status counted under ``kind``; None (an error noted) when no answer came."""
        started = time.perf_counter()
        try:
            response = await send()
        except httpx.HTTPError as exc:
            self.errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        self.latencies[kind].append(time.perf_counter() - started)
        self.statuses[(kind, str(response.status_code))] += 1
        return response


async def _hook(client: httpx.AsyncClient, tally: Tally, *, service_id: str, patient: PatientData) -> None:
    response = await tally.timed(
        "hook",
        label=f"hook {service_id}",
        send=lambda: client.post(f"/cds-services/{service_id}", content=hook_body(patient), headers={"content-type": "application/json"}),
    )
    if response is None:
        return
    if response.status_code != 200:
        tally.errors.append(f"hook {service_id} {patient.patient_id}: {response.status_code} {response.text[:200]}")
        return
    tally.hook_answered += 1
    for card in response.json()["cards"]:
        tally.cards_returned.add(card["uuid"])
        tally.cards_seen.append({**card, "_service": service_id})


def _feedback_item(card: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    suggestions = card.get("suggestions") or []
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if suggestions and rng.random() < 0.5:
        return {"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": suggestions[0]["uuid"]}], "outcomeTimestamp": timestamp}
    reasons = [reason for reason in card.get("overrideReasons") or [] if reason["code"] not in _SUPPRESSING]
    item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": timestamp}
    if reasons:
        item["overrideReason"] = {"reason": rng.choice(reasons), "userComment": "soak test"}
    return item


async def _feedback(client: httpx.AsyncClient, tally: Tally, *, card: dict[str, Any], rng: random.Random) -> None:
    """Send one feedback item; a 503 is retried as an EHR would (interface.md: 503 so the client retries)."""
    item = _feedback_item(card, rng)
    tally.feedback_sent.add(card["uuid"])
    for attempt in range(_FEEDBACK_ATTEMPTS):
        response = await tally.timed(
            "feedback",
            label=f"feedback {card['uuid']}",
            send=lambda: client.post(f"/cds-services/{card['_service']}/feedback", json={"feedback": [item]}),
        )
        if response is None:
            return
        if response.status_code == 200:
            tally.feedback_acknowledged.add(card["uuid"])
            return
        if response.status_code != 503:
            break
        tally.feedback_retries += 1
        await asyncio.sleep(0.2 * (attempt + 1))
    tally.errors.append(f"feedback {card['uuid']}: {response.status_code} {response.text[:200]}")


async def drive(
    base_url: str,
    *,
    seconds: float,
    rate: float,
    feedback_every: int,
    max_in_flight: int,
    seed: int,
    disrupt: Callable[[], str] | None = None,
) -> Tally:
    """The open-loop traffic: one request per tick, never more than ``rate * seconds`` in all.

    ``disrupt`` runs at a quarter, half and three quarters of the run (in a thread, so the ticks go on).
    """
    patients = load_patients(shift_to=date.today() - timedelta(days=30))
    rng = random.Random(seed)
    calls = itertools.cycle([(service, patient) for patient in patients for service in SERVICES])
    tally = Tally()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0), limits=limits) as client:
        tasks: set[asyncio.Task[None]] = set()
        total = int(rate * seconds)
        start = time.perf_counter()
        disruptions: list[asyncio.Future[str]] = []
        disrupt_at = {total // 4, total // 2, 3 * total // 4} if disrupt is not None else set()
        for tick in range(total):
            if tick in disrupt_at and disrupt is not None:
                disruptions.append(asyncio.get_running_loop().run_in_executor(None, disrupt))
            delay = start + tick / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                tally.skipped_ticks += 1  # the server is behind: counted, reported as an error
                continue
            unanswered = [card for card in tally.cards_seen if card["uuid"] not in tally.feedback_sent]
            if tick % feedback_every == feedback_every - 1 and unanswered:
                coroutine = _feedback(client, tally, card=rng.choice(unanswered), rng=rng)
            else:
                service_id, patient = next(calls)
                coroutine = _hook(client, tally, service_id=service_id, patient=patient)
            task = asyncio.create_task(coroutine)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for number, disruption in enumerate(disruptions, start=1):
            print(f"soak: disruption {number} of {len(disruptions)}: {await disruption}")
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=_DRAIN_SECONDS)
            for task in pending:
                task.cancel()
                tally.errors.append("a request was still unanswered after the run")
    if tally.skipped_ticks:
        tally.errors.append(f"{tally.skipped_ticks} ticks skipped: {max_in_flight} requests were in flight")
    return tally


def kill_sessions(database_url: str) -> str:
    """End every other session on the service's database: what a PostgreSQL restart does to it."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return f"pg_terminate_backend ended {killed} sessions of the service"


def check_database(database_url: str, tally: Tally) -> list[str]:
    """What the database must hold after the run; read with plain SQL, not through the service."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored_feedback = {row[0] for row in connection.execute(sa.text("SELECT card_uuid FROM feedback"))}
            invocations = connection.execute(sa.text("SELECT count(*) FROM invocation")).scalar_one()
            issued = {row[0] for row in connection.execute(sa.text("SELECT uuid FROM card_issued"))}
    finally:
        engine.dispose()
    problems = []
    missing = tally.feedback_acknowledged - stored_feedback
    if missing:
        problems.append(f"{len(missing)} acknowledged feedback items are not in the database, e.g. {sorted(missing)[:3]}")
    if invocations < tally.hook_answered:
        problems.append(f"{tally.hook_answered} hook calls answered but {invocations} invocation rows")
    lost_cards = tally.cards_returned - issued
    if lost_cards:
        problems.append(f"{len(lost_cards)} cards returned but not in card_issued, e.g. {sorted(lost_cards)[:3]}")
    print(
        f"database: feedback {len(tally.feedback_acknowledged & stored_feedback)}/{len(tally.feedback_acknowledged)} acknowledged items stored "
        f"({len(tally.feedback_sent)} sent); invocation rows {invocations} for {tally.hook_answered} answered calls; "
        f"card_issued has {len(tally.cards_returned & issued)}/{len(tally.cards_returned)} returned cards"
    )
    return problems


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:.1f} ms, p95 {cuts[94] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


def report(tally: Tally, *, elapsed: float) -> None:
    requests = sum(tally.statuses.values())
    print(f"soak: {requests} requests in {elapsed:.1f} s ({requests / elapsed:.1f}/s); statuses {dict(sorted(tally.statuses.items()))}")
    for kind, values in tally.latencies.items():
        print(f"  {kind:9} {len(values):5} answered: {_percentiles(values)}")
    everything = tally.latencies["hook"] + tally.latencies["feedback"]
    print(f"  all       {len(everything):5} answered: {_percentiles(everything)}")
    print(
        f"  cards returned {len(tally.cards_returned)}; feedback sent {len(tally.feedback_sent)}, "
        f"acknowledged {len(tally.feedback_acknowledged)} (after {tally.feedback_retries} retries of a 503)"
    )
    print(f"  errors: {len(tally.errors)}")
    for error in tally.errors[:20]:
        print(f"    {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests started per second")
    parser.add_argument("--feedback-every", type=int, default=4, help="every Nth request is feedback (when a card is waiting)")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--database-url", help="SQLAlchemy URL of an empty database (default: a temporary SQLite file)")
    parser.add_argument(
        "--kill-db-sessions",
        action="store_true",
        help="PostgreSQL only: three times during the run, end every session of the service (pg_terminate_backend), "
        "as a server restart does; the service must recover by itself",
    )
    args = parser.parse_args(argv)
    if args.kill_db_sessions and not (args.database_url or "").startswith("postgresql"):
        parser.error("--kill-db-sessions needs --database-url postgresql+psycopg://...")
    if args.seconds <= 0 or args.seconds > 600 or args.rate <= 0 or args.rate > 500:
        parser.error("--seconds must be in (0, 600] and --rate in (0, 500]")

    with tempfile.TemporaryDirectory(prefix="cds-soak-") as tmp:
        workdir = Path(tmp)
        database_url = args.database_url or f"sqlite:///{workdir / 'soak.sqlite3'}"
        env = service_env(workdir, database_url)
        upgrade_database(env)
        with serve(env, log_path=workdir / "server.log") as served:
            started = time.perf_counter()
            tally = asyncio.run(
                drive(
                    served.base_url, seconds=args.seconds, rate=args.rate, feedback_every=args.feedback_every,
                    max_in_flight=args.max_in_flight, seed=args.seed,
                    disrupt=(lambda: kill_sessions(database_url)) if args.kill_db_sessions else None,
                )
            )
            elapsed = time.perf_counter() - started
        # The server has stopped: its audit queue is flushed, so the database is complete now.
        server_errors = served.server_errors()
        report(tally, elapsed=elapsed)
        problems = check_database(database_url, tally)
    for line in server_errors[:20]:
        print(f"  server error: {line}")
    for problem in problems:
        print(f"  database: {problem}")
    ok = not tally.errors and not problems and not server_errors
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
