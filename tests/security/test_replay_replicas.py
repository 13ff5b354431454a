"""A jti is single-use across replicas: two apps on one database, the same tokens sent to both at once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import service.store.store as store_module
from service.store import upgrade_database
from service.store.replay import prune_expired
from tests.security.conftest import DISCOVERY, ISS, SecureClient, bearer
from tests.security.keys import ClientKey, jwks_of, sign
from tests.support.scratch_postgres import postgres_admin_url, scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One migrated database the replicas share."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'replicas.sqlite3'}"
        upgrade_database(url)
        yield url
        return
    admin = postgres_admin_url("the PostgreSQL replica test is skipped")
    with scratch_database(admin, prefix="bkc_security") as url:
        upgrade_database(url)
        yield url


def test_each_token_is_accepted_by_exactly_one_replica(
    secure_client: SecureClient, es384_key: ClientKey, shared_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # About the race, not the fallback: an insert slower than REPLAY_CHECK_SECONDS on a busy machine
    # (SQLite serialises the 48 at once) is accepted from memory by design, and both replicas would accept.
    monkeypatch.setattr(store_module, "REPLAY_CHECK_SECONDS", 30)
    clients = [{"iss": ISS, "jwks": jwks_of(es384_key)}]
    tokens = [sign(es384_key, iss=ISS, aud=DISCOVERY) for _ in range(12)]
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=8) as pool:
        replicas = [stack.enter_context(secure_client(clients, database_url=shared_database)) for _ in range(2)]
        # Every token goes to both replicas, twice each, all at once.
        futures = {
            token: [pool.submit(replica.get, "/cds-services", headers=bearer(token)) for replica in replicas * 2]
            for token in tokens
        }
        statuses = {token: sorted(f.result().status_code for f in sent) for token, sent in futures.items()}
    assert all(codes == [200, 401, 401, 401] for codes in statuses.values()), statuses


def test_a_jti_accepted_within_the_clock_skew_survives_the_prune(secure_client: SecureClient, es384_key: ClientKey, shared_database: str) -> None:
    """A used jti is kept until exp plus the clock skew, the time its token is still accepted."""
    clients = [{"iss": ISS, "jwks": jwks_of(es384_key)}]
    token = sign(es384_key, iss=ISS, aud=DISCOVERY, issued_ago=60, lifetime=30)  # exp 30 s ago, inside the 60 s skew
    with ExitStack() as stack:
        first, second = (stack.enter_context(secure_client(clients, database_url=shared_database)) for _ in range(2))
        assert first.get("/cds-services", headers=bearer(token)).status_code == 200
        engine = sa.create_engine(shared_database)
        prune_expired(engine, datetime.now(UTC))  # what each replica's maintenance runs every few minutes
        engine.dispose()
        assert second.get("/cds-services", headers=bearer(token)).status_code == 401
