"""Row ids and the foreign keys to them become 64-bit on PostgreSQL.

``serial`` made 32-bit columns and sequences: after 2^31 ids every insert failed (``seen_jwt``
takes one per authenticated call, replays included, and pruning does not give them back), and
the service dropped audit records and could no longer record JWT ids. SQLite needs nothing: its
INTEGER PRIMARY KEY is a 64-bit rowid.

Changing a column's type rewrites the table under an exclusive lock: on a large audit table,
run ``back-knee-cds db upgrade`` in a quiet hour, with the older replicas stopped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES_WITH_IDS = ("invocation", "card_issued", "feedback", "suppression", "seen_jwt")
_REFERENCES = (("card_issued", "invocation_id"), ("suppression", "feedback_id"))


def upgrade() -> None:
    _set_id_type(sa.BigInteger(), sa.Integer(), sequence_type="bigint")


def downgrade() -> None:
    _set_id_type(sa.Integer(), sa.BigInteger(), sequence_type="integer")


def _set_id_type(new: sa.types.TypeEngine[int], old: sa.types.TypeEngine[int], *, sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES_WITH_IDS:
        op.alter_column(table, "id", type_=new, existing_type=old, existing_nullable=False)
        # The sequence has a type of its own (its maximum): the column's alone would not do.
        op.execute(f"ALTER SEQUENCE {_sequence_of(table)} AS {sequence_type}")
    for table, column in _REFERENCES:
        op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)


def _sequence_of(table: str) -> str:
    name = op.get_bind().execute(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table}).scalar_one()
    return str(name)
