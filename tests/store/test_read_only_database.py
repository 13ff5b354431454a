"""A PostgreSQL database that answers but takes no writes (a standby after a failover): the store
waits for it as for a database that is down, instead of dropping records or waving replays through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.store import Store
from tests.store.helpers import ScratchPostgres, card, eventually, invocation, rows

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


async def test_records_wait_for_a_read_only_database_and_readiness_says_so(
    migrated_url: str, scratch_postgres: ScratchPostgres
) -> None:
    name = migrated_url.rsplit("/", 1)[1]
    store = Store(migrated_url, retry_seconds=0.05)
    await store.start()
    try:
        assert await store.check_ready() is None
        scratch_postgres.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        scratch_postgres.terminate_connections(name)  # new sessions read the setting: as a failover to a standby
        store.record_invocation(invocation(cards=(card(),)))
        problem = await store.check_ready()
        assert problem is not None and "read-only" in problem
        expires = datetime.now(UTC) + timedelta(minutes=5)
        assert await store.remember_jti("https://ehr.example.org", "jti-1", expires)  # remembered in memory meanwhile
        assert not await store.remember_jti("https://ehr.example.org", "jti-1", expires)
        assert store.audit_lost == 0 and store.audit_backlog == 1

        scratch_postgres.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        scratch_postgres.terminate_connections(name)
        await eventually(lambda: store.audit_backlog == 0)
        assert await store.check_ready() is None
        await eventually(lambda: rows(migrated_url, "SELECT count(*) FROM seen_jwt")[0][0] == 1)
    finally:
        await store.close()
    assert store.audit_lost == 0
    assert rows(migrated_url, "SELECT count(*) FROM invocation") == [(1,)]
