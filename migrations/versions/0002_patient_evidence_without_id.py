"""Stored card evidence names the patient as ``Patient``, no longer as ``Patient/<raw id>``.

Until this release a card resting on the patient's age stored ``Patient/<id>`` in
``card_issued.evidence``: the one place a raw patient id was written (the invocation row holds
it hashed). This rewrites those rows as the service now writes them. Only the id is dropped: the
evidence still says the card rested on the Patient resource. The id cannot be restored, so the
downgrade leaves the rows as they are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000  # rows read and rewritten at a time: memory stays flat on a large audit table

_card_issued = sa.table("card_issued", sa.column("id", sa.Integer()), sa.column("evidence", sa.JSON()))


def upgrade() -> None:
    connection = op.get_bind()
    after = 0
    while True:
        batch = connection.execute(
            sa.select(_card_issued.c.id, _card_issued.c.evidence)
            .where(_card_issued.c.id > after, sa.cast(_card_issued.c.evidence, sa.Text()).like('%"Patient/%'))
            .order_by(_card_issued.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        connection.execute(
            sa.update(_card_issued).where(_card_issued.c.id == sa.bindparam("row_id")),
            [{"row_id": row_id, "evidence": _without_patient_id(evidence)} for row_id, evidence in batch],
        )
        after = batch[-1][0]


def _without_patient_id(evidence: object) -> object:
    """``service.privacy.stored_reference`` of each reference, as of this revision (a migration
    keeps its own copy: it must do the same thing whatever later code says)."""
    if not isinstance(evidence, list):
        return evidence
    return [
        "Patient" if isinstance(reference, str) and reference.startswith("Patient/") else reference for reference in evidence
    ]


def downgrade() -> None:
    pass  # the ids are gone; the rows stay as they are
