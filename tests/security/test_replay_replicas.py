"""A jti is single-use across replicas: two apps on one database, the same tokens sent to both at once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.store import upgrade_database
from tests.security.conftest import DISCOVERY, ISS, SecureClient, bearer
from tests.security.keys import ClientKey, jwks_of, sign

PG_ENV = "CDS_TEST_DATABASE_URL"


def _admin(url: str, statement: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One migrated database the replicas share."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'replicas.sqlite3'}"
        upgrade_database(url)
        yield url
        return
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(f"{PG_ENV} is not set: the PostgreSQL replica test is skipped (CI sets it; see .ci/run)")
    name = f"bkc_security_{uuid.uuid4().hex[:12]}"
    _admin(admin, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        upgrade_database(url)
        yield url
    finally:
        _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_each_token_is_accepted_by_exactly_one_replica(secure_client: SecureClient, es384_key: ClientKey, shared_database: str) -> None:
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
