"""Initial schema: invocations, issued cards, feedback, suppressions, seen JWT ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("hook", sa.Text(), nullable=False),
        sa.Column("hook_instance", sa.Text(), nullable=False),
        sa.Column("patient_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("catalogue_version", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("skipped_resources", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invocation_patient_hash", "invocation", ["patient_hash"])
    op.create_index("ix_invocation_received_at", "invocation", ["received_at"])

    op.create_table(
        "card_issued",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Text(), nullable=False),
        sa.Column("invocation_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("rule_version", sa.Text(), nullable=False),
        sa.Column("indicator", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("suggestion_uuids", sa.JSON(), nullable=False),
        sa.Column("patient_hash", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invocation_id"], ["invocation.id"], name="fk_card_issued_invocation_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid", name="uq_card_issued_uuid"),
    )
    op.create_index("ix_card_issued_invocation_id", "card_issued", ["invocation_id"])
    op.create_index("ix_card_issued_rule_id", "card_issued", ["rule_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("card_uuid", sa.Text(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_reason_code", sa.Text(), nullable=True),
        sa.Column("override_reason_system", sa.Text(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("known_card", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identity", name="uq_feedback_identity"),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])

    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_hash", sa.Text(), nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_before", sa.Date(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["feedback_id"], ["feedback.id"], name="fk_suppression_feedback_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("feedback_id", name="uq_suppression_feedback_id"),
    )
    op.create_index("ix_suppression_patient_hash_ends_before", "suppression", ["patient_hash", "ends_before"])

    op.create_table(
        "seen_jwt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "jti", name="uq_seen_jwt_issuer_jti"),
    )
    op.create_index("ix_seen_jwt_expires_at", "seen_jwt", ["expires_at"])


def downgrade() -> None:
    op.drop_table("seen_jwt")
    op.drop_table("suppression")
    op.drop_table("feedback")
    op.drop_table("card_issued")
    op.drop_table("invocation")
