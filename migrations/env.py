"""Alembic environment: migrations run on the connection or URL the caller hands in.

``service.store.migrate`` passes a connection (``upgrade_database``) ; the ``alembic`` command
(developers) gets the URL from ``CDS_DATABASE_URL`` through ``Settings``, never from alembic.ini.
Every path takes the migration lock, so replicas starting together migrate once.
"""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from service.store.database import make_engine
from service.store.migrate import migration_lock
from service.store.tables import metadata

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from service.settings import Settings

    return Settings().database_url


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite alters tables by copying them; Alembic's batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with migration_lock(connection):
        with context.begin_transaction():
            context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=_database_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # The `alembic` command: log as alembic.ini says, connect from Settings.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = make_engine(_database_url(), for_migrations=True)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


main()
