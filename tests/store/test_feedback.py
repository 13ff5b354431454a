"""Feedback: stored once committed, once per item, for known and unknown cards; suppressions it causes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.store import FeedbackMismatch, Store, StoreUnavailable, SuppressionPolicy, upgrade_database
from service.store.database import make_engine
from service.store.tables import CardIssued, Invocation
from tests.store.feedback_helpers import (
    OTHER_PATIENT,
    OVERRIDDEN_AT,
    PATIENT,
    REASON_SYSTEM,
    SERVICE,
    SUPPRESS_DAYS,
    accepted,
    feedback_store,
    issued,
    overridden,
)
from tests.store.helpers import AbsentDatabase, ScratchPostgres, card, eventually, invocation, rows

@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[Store]:
    store = feedback_store(migrated_url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def test_feedback_on_a_known_card_is_stored_with_every_field(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    [outcome] = await store.save_feedback([accepted(uuid, "s-2", "s-1")])
    assert (outcome.card_uuid, outcome.known_card, outcome.duplicate, outcome.suppressed_rule) == (uuid, True, False, None)
    [row] = rows(migrated_url, "SELECT * FROM feedback")
    assert (row.card_uuid, row.service_id, row.outcome, row.known_card) == (uuid, "back-knee-care-guidance", "accepted", True)
    assert "s-2" in str(row.accepted_suggestions) and "s-1" in str(row.accepted_suggestions)
    assert row.override_reason_code is None and row.user_comment is None
    assert str(row.outcome_timestamp).startswith("2026-03-10 15:30:00")


async def test_overridden_fields_are_stored(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    await store.save_feedback([overridden(uuid, "not-relevant")])
    [row] = rows(migrated_url, "SELECT * FROM feedback")
    assert (row.override_reason_code, row.override_reason_system, row.user_comment) == (
        "not-relevant",
        "urn:back-knee-cds:override-reason",
        "discussed at the last visit",
    )


async def test_the_same_item_sent_again_is_stored_once(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    item = overridden(uuid)
    first = await store.save_feedback([item])
    again = await store.save_feedback([item, item])
    assert [o.duplicate for o in first] == [False]
    assert [o.duplicate for o in again] == [True, True]
    assert rows(migrated_url, "SELECT count(*) FROM feedback") == [(1,)]
    assert rows(migrated_url, "SELECT count(*) FROM suppression") == [(1,)]


async def test_a_repeat_within_one_request_is_stored_once(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    outcomes = await store.save_feedback([accepted(uuid, "s-1"), accepted(uuid, "s-1")])
    assert [o.duplicate for o in outcomes] == [False, True]
    assert rows(migrated_url, "SELECT count(*) FROM feedback") == [(1,)]


async def test_suggestion_order_does_not_make_a_new_item(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    await store.save_feedback([accepted(uuid, "s-1", "s-2")])
    [outcome] = await store.save_feedback([accepted(uuid, "s-2", "s-1")])
    assert outcome.duplicate


async def test_items_that_differ_are_each_stored(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    items = [
        overridden(uuid),
        overridden(uuid, user_comment="another comment"),
        overridden(uuid, outcome_timestamp=OVERRIDDEN_AT + timedelta(seconds=1)),
        overridden(uuid, "patient-declined"),
        accepted(uuid, "s-1"),
    ]
    outcomes = await store.save_feedback(items)
    assert not any(o.duplicate for o in outcomes)
    assert rows(migrated_url, "SELECT count(*) FROM feedback") == [(5,)]


async def test_the_same_instant_in_another_offset_is_the_same_item(store: Store) -> None:
    uuid = await issued(store)
    await store.save_feedback([overridden(uuid)])
    shifted = OVERRIDDEN_AT.astimezone(timezone(timedelta(hours=-5)))
    [outcome] = await store.save_feedback([overridden(uuid, outcome_timestamp=shifted)])
    assert outcome.duplicate


async def test_feedback_on_an_unknown_card_is_stored_and_flagged(store: Store, migrated_url: str) -> None:
    [outcome] = await store.save_feedback([overridden("no-such-card")])
    assert (outcome.known_card, outcome.duplicate, outcome.suppressed_rule) == (False, False, None)
    assert rows(migrated_url, "SELECT card_uuid, known_card FROM feedback") == [("no-such-card", False)]
    assert rows(migrated_url, "SELECT count(*) FROM suppression") == [(0,)]


async def test_feedback_finds_a_card_whose_audit_record_is_still_queued(migrated_url: str) -> None:
    """Feedback can outrun the audit writer: the card is looked up in the queue too."""
    store = feedback_store(migrated_url)  # not started: its writer has not run yet
    queued = card("weight-management")
    store.record_invocation(invocation(service_id=SERVICE, patient_hash=PATIENT, cards=(queued,)))
    try:
        [outcome] = await store.save_feedback([overridden(queued.uuid)])
        assert outcome.known_card and outcome.suppressed_rule == "weight-management"
        await store.start()
        await eventually(lambda: store.audit_backlog == 0)
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
    finally:
        await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM card_issued WHERE uuid = :u", u=queued.uuid) == [(1,)]


@pytest.mark.parametrize(
    ("reason", "system", "suppresses"),
    [
        ("already-addressed", "urn:back-knee-cds:override-reason", True),
        ("not-relevant", "urn:back-knee-cds:override-reason", False),
        ("already-addressed", "http://ehr.example.org/override-reasons", False),
    ],
)
async def test_feedback_that_reached_another_replica_first_takes_effect_once_the_card_is_written(
    migrated_url: str, reason: str, system: str, suppresses: bool
) -> None:
    """After an outage, one replica may still hold a card in its queue while the EHR's feedback on
    it reaches another: stored as about an unknown card, it is caught up when the card is written."""
    holding = feedback_store(migrated_url)  # not started: its card waits
    other = feedback_store(migrated_url)
    late = card("weight-management")
    holding.record_invocation(invocation(service_id=SERVICE, patient_hash=PATIENT, cards=(late,)))
    await other.start()
    try:
        [outcome] = await other.save_feedback([overridden(late.uuid, reason, override_reason_system=system)])
        assert not outcome.known_card and outcome.suppressed_rule is None
        await holding.start()
        await eventually(lambda: holding.audit_backlog == 0)
    finally:
        await holding.close()
    known = rows(migrated_url, "SELECT known_card FROM feedback WHERE card_uuid = :u", u=late.uuid)
    assert [bool(row[0]) for row in known] == [True]
    try:
        expected = {"weight-management"} if suppresses else frozenset()
        assert await other.suppressed_rules(PATIENT, OVERRIDDEN_AT.date() + timedelta(days=1)) == expected
    finally:
        await other.close()


async def test_feedback_committed_in_the_same_moment_as_its_card_is_taken_over_later(migrated_url: str) -> None:
    """Two replicas' transactions, neither seeing the other's row: the card's writer found no late
    feedback, and the feedback found no card. The store's maintenance takes it over afterwards."""
    store = feedback_store(migrated_url)
    raced = card("weight-management")
    await store.start()
    try:
        [outcome] = await store.save_feedback([overridden(raced.uuid)])
        assert not outcome.known_card
        _store_card_as_another_replica(migrated_url, raced.uuid)
        await store.reconcile_late_feedback()  # as maintenance does (which may have got there first)
        assert await store.reconcile_late_feedback() == 0  # taken over once only
        assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
    finally:
        await store.close()
    assert [bool(row[0]) for row in rows(migrated_url, "SELECT known_card FROM feedback WHERE card_uuid = :u", u=raced.uuid)] == [True]
    assert rows(migrated_url, "SELECT count(*) FROM suppression") == [(1,)]


async def test_reconciling_reads_only_feedback_newer_than_two_runs_ago(migrated_url: str) -> None:
    """The scan is an id range, so it does not grow with feedback about cards never stored."""
    store = feedback_store(migrated_url)
    old, recent = card("weight-management"), card("weight-management")
    try:  # not started: only these calls reconcile
        await store.save_feedback([overridden(old.uuid)])
        await store.reconcile_late_feedback()
        await store.reconcile_late_feedback()  # the watermark is now past the old item
        await store.save_feedback([overridden(recent.uuid)])
        _store_card_as_another_replica(migrated_url, old.uuid)
        _store_card_as_another_replica(migrated_url, recent.uuid)
        assert await store.reconcile_late_feedback() == 1
    finally:
        await store.close()
    known = rows(migrated_url, "SELECT card_uuid, known_card FROM feedback")
    assert {uuid: bool(flag) for uuid, flag in known} == {old.uuid: False, recent.uuid: True}


def _store_card_as_another_replica(url: str, card_uuid: str, *, rule_id: str = "weight-management", service_id: str = SERVICE) -> None:
    """The card as another replica's audit writer commits it, its late-feedback check having seen nothing."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            invocation_id = connection.execute(
                sa.insert(Invocation.__table__).returning(Invocation.__table__.c.id),  # type: ignore[attr-defined]
                {
                    "service_id": service_id, "hook": "patient-view", "hook_instance": f"raced-{card_uuid}",
                    "patient_hash": PATIENT, "status": 200, "duration_ms": 1.0, "catalogue_version": "1.0.1",
                    "received_at": OVERRIDDEN_AT, "skipped_resources": [],
                },
            ).scalar_one()
            connection.execute(sa.insert(CardIssued.__table__), {  # type: ignore[attr-defined]
                "uuid": card_uuid, "invocation_id": invocation_id, "rule_id": rule_id, "rule_version": "1.0.0",
                "indicator": "info", "evidence": [], "suggestion_uuids": [], "patient_hash": PATIENT,
            })
    finally:
        engine.dispose()


@pytest.mark.parametrize("reason", ["already-addressed", "patient-declined"])
async def test_a_suppressing_override_silences_the_rule_for_that_patient_for_its_days(store: Store, reason: str) -> None:
    uuid = await issued(store, "weight-management")
    [outcome] = await store.save_feedback([overridden(uuid, reason)])
    assert outcome.suppressed_rule == "weight-management"
    day = OVERRIDDEN_AT.date()
    assert await store.suppressed_rules(PATIENT, day) == {"weight-management"}
    assert await store.suppressed_rules(PATIENT, day + timedelta(days=89)) == {"weight-management"}
    assert await store.suppressed_rules(PATIENT, day + timedelta(days=90)) == frozenset()
    assert await store.suppressed_rules(PATIENT, day - timedelta(days=1)) == frozenset()
    assert await store.suppressed_rules(OTHER_PATIENT, day) == frozenset()


async def test_suppress_days_is_per_rule(store: Store) -> None:
    uuid = await issued(store, "sciatica-guidance")
    await store.save_feedback([overridden(uuid)])
    day = OVERRIDDEN_AT.date()
    assert await store.suppressed_rules(PATIENT, day + timedelta(days=29)) == {"sciatica-guidance"}
    assert await store.suppressed_rules(PATIENT, day + timedelta(days=30)) == frozenset()


@pytest.mark.parametrize("reason", ["not-relevant", "data-incorrect", None])
async def test_other_reasons_are_stored_but_suppress_nothing(store: Store, migrated_url: str, reason: str | None) -> None:
    uuid = await issued(store)
    [outcome] = await store.save_feedback([overridden(uuid, reason)])  # type: ignore[arg-type]
    assert outcome.suppressed_rule is None and not outcome.duplicate
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()
    assert rows(migrated_url, "SELECT count(*) FROM feedback") == [(1,)]


@pytest.mark.parametrize("system", ["http://ehr.example.org/override-reasons", None])
async def test_a_suppressing_code_from_another_system_suppresses_nothing(store: Store, migrated_url: str, system: str | None) -> None:
    """A reason is a Coding: an EHR's own reason that shares the code is another reason (CDS Hooks lets EHRs add their own)."""
    uuid = await issued(store)
    [outcome] = await store.save_feedback([overridden(uuid, "already-addressed", override_reason_system=system)])
    assert outcome.suppressed_rule is None and outcome.known_card
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()
    assert rows(migrated_url, "SELECT override_reason_system, override_reason_code FROM feedback") == [(system, "already-addressed")]


async def test_feedback_contradicting_its_card_is_refused_and_nothing_of_the_request_is_stored(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    with pytest.raises(FeedbackMismatch, match=f"card '{uuid}' has no suggestion 'made-up'"):
        await store.save_feedback([accepted(uuid, "s-1"), accepted(uuid, "s-2", "made-up")])
    acl = await issued(store, "acl-tear-surgical-referral", service_id="back-knee-injury-referral")
    with pytest.raises(FeedbackMismatch, match="was issued by service 'back-knee-injury-referral'"):
        await store.save_feedback([overridden(acl)])  # sent to back-knee-care-guidance
    assert rows(migrated_url, "SELECT count(*) FROM feedback") == [(0,)]
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()


async def test_a_card_is_checked_against_the_service_that_issued_it(store: Store) -> None:
    """Not against today's catalogue: a release may have moved the rule to another service since.
    The audit trail says who showed the card; feedback sent there is the right feedback."""
    uuid = await issued(store, "weight-management", service_id="back-knee-risk-factors")
    [outcome] = await store.save_feedback([overridden(uuid, service_id="back-knee-risk-factors")])
    assert outcome.known_card and outcome.suppressed_rule == "weight-management"
    with pytest.raises(FeedbackMismatch, match="was issued by service 'back-knee-risk-factors'"):
        await store.save_feedback([overridden(uuid, "patient-declined")])  # to back-knee-care-guidance


async def test_late_feedback_sent_to_another_service_suppresses_nothing(migrated_url: str) -> None:
    """Caught up after the card is written elsewhere, it can no longer be refused: it is kept, and silences nothing."""
    store = feedback_store(migrated_url)
    acl = card("acl-tear-surgical-referral")
    try:  # not started: the card is written below, as another replica would
        [outcome] = await store.save_feedback([overridden(acl.uuid)])
        assert not outcome.known_card
        _store_card_as_another_replica(migrated_url, acl.uuid, rule_id="acl-tear-surgical-referral", service_id="back-knee-injury-referral")
        assert await store.reconcile_late_feedback() == 1
    finally:
        await store.close()
    assert rows(migrated_url, "SELECT count(*) FROM suppression") == [(0,)]


async def test_accepting_a_suggestion_suppresses_nothing(store: Store) -> None:
    uuid = await issued(store)
    await store.save_feedback([accepted(uuid, "s-1")])
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()


async def test_an_accepted_card_with_a_suppressing_reason_suppresses_nothing(store: Store) -> None:
    """Only an override suppresses: an accepted item that also carries a suppressing reason code does not."""
    uuid = await issued(store)
    [outcome] = await store.save_feedback([overridden(uuid, "already-addressed", outcome="accepted", accepted_suggestions=("s-1",))])
    assert outcome.suppressed_rule is None
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()


async def test_the_suppressing_reasons_can_come_from_the_catalogue(migrated_url: str) -> None:
    policy = SuppressionPolicy(SUPPRESS_DAYS, frozenset({"not-relevant"}), REASON_SYSTEM)
    store = Store(migrated_url, retry_seconds=0.05, suppression_policy=policy)
    await store.start()
    try:
        uuid = await issued(store)
        [outcome] = await store.save_feedback([overridden(uuid, "not-relevant")])
        assert outcome.suppressed_rule == "weight-management"
    finally:
        await store.close()


async def test_a_rule_without_suppress_days_is_not_suppressed(store: Store) -> None:
    uuid = await issued(store, "knee-arthritis-care")
    [outcome] = await store.save_feedback([overridden(uuid)])
    assert outcome.suppressed_rule is None
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == frozenset()


async def test_a_future_outcome_timestamp_counts_from_the_day_received(store: Store, migrated_url: str) -> None:
    uuid = await issued(store)
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    await store.save_feedback([overridden(uuid, outcome_timestamp=far)])
    [(starts_on, ends_before)] = rows(migrated_url, "SELECT starts_on, ends_before FROM suppression")
    today = datetime.now(UTC).date()
    assert str(starts_on) == str(today)
    assert str(ends_before) == str(today + timedelta(days=90))


async def test_suppressions_survive_a_restart(migrated_url: str) -> None:
    first = feedback_store(migrated_url)
    await first.start()
    try:
        uuid = await issued(first)
        await first.save_feedback([overridden(uuid)])
    finally:
        await first.close()
    second = feedback_store(migrated_url)
    await second.start()
    try:
        assert await second.check_ready() is None
        assert await second.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
    finally:
        await second.close()


async def test_with_the_database_down_feedback_raises_and_suppressions_read_as_none(
    absent_database: AbsentDatabase,
) -> None:
    store = feedback_store(absent_database.url, connect_timeout_seconds=2, close_timeout_seconds=0.2)
    await store.start()
    try:
        with pytest.raises(StoreUnavailable):
            await store.save_feedback([overridden("card-1")])
        assert await store.suppressed_rules(PATIENT, date(2026, 3, 10)) == frozenset()
        absent_database.appear()
        upgrade_database(absent_database.url)
        [outcome] = await store.save_feedback([overridden("card-1")])
        assert not outcome.duplicate
    finally:
        await store.close()
    assert rows(absent_database.url, "SELECT count(*) FROM feedback") == [(1,)]


async def test_feedback_is_refused_while_migrations_are_missing(database_url: str) -> None:
    store = feedback_store(database_url)
    await store.start()
    try:
        with pytest.raises(StoreUnavailable):
            await store.save_feedback([overridden("card-1")])
    finally:
        await store.close()


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_feedback_is_stored_after_postgresql_dropped_every_connection(
    store: Store, migrated_url: str, scratch_postgres: ScratchPostgres
) -> None:
    """A database restart: pooled connections die; the next feedback still succeeds (pre-ping)."""
    uuid = await issued(store)
    scratch_postgres.terminate_connections(migrated_url.rsplit("/", 1)[1])
    [outcome] = await store.save_feedback([overridden(uuid)])
    assert outcome.known_card and not outcome.duplicate
    assert await store.suppressed_rules(PATIENT, OVERRIDDEN_AT.date()) == {"weight-management"}
