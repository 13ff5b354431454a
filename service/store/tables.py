"""The database tables, in one place; ``migrations/`` creates exactly these (a test checks).

Constraint and index names are spelled out so migrations can refer to them on every dialect.
Times are stored in UTC; SQLite keeps no offset, so readers treat naive values as UTC
(:func:`service.store.database.as_utc`). Free text has no length limit: a value the database
cannot take must never make an audit record or a feedback item unstorable.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["Invocation", "CardIssued", "Feedback", "Suppression", "SeenJwt", "metadata"]

metadata = SQLModel.metadata

# Row ids are 64-bit (migration 0003): a 32-bit sequence ran out after 2^31 rows, and seen_jwt
# takes one per authenticated call, replays included. SQLite's INTEGER PRIMARY KEY already is
# 64-bit, and only that spelling auto-increments there.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Invocation(SQLModel, table=True):
    """One hook call: which service answered whom (hashed), how, and with which catalogue."""

    __tablename__ = "invocation"
    __table_args__ = (
        sa.Index("ix_invocation_received_at", "received_at"),
        sa.Index("ix_invocation_patient_hash", "patient_hash"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    service_id: str = Field(sa_type=sa.Text, nullable=False)
    hook: str = Field(sa_type=sa.Text, nullable=False)
    hook_instance: str = Field(sa_type=sa.Text, nullable=False)
    patient_hash: str = Field(sa_type=sa.Text, nullable=False)
    status: int = Field(nullable=False)
    duration_ms: float = Field(nullable=False)
    catalogue_version: str = Field(sa_type=sa.Text, nullable=False)
    received_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)
    # "Condition/abc" of each relevant resource that failed validation (architecture.md).
    skipped_resources: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)


class CardIssued(SQLModel, table=True):
    """Every card sent, so feedback can name its rule and patient and audits can replay why."""

    __tablename__ = "card_issued"
    __table_args__ = (
        sa.UniqueConstraint("uuid", name="uq_card_issued_uuid"),
        sa.Index("ix_card_issued_invocation_id", "invocation_id"),
        sa.Index("ix_card_issued_rule_id", "rule_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    uuid: str = Field(sa_type=sa.Text, nullable=False)
    invocation_id: int = Field(
        sa_type=_ID,
        sa_column_args=[sa.ForeignKey("invocation.id", name="fk_card_issued_invocation_id", ondelete="CASCADE")],
        nullable=False,
    )
    rule_id: str = Field(sa_type=sa.Text, nullable=False)
    rule_version: str = Field(sa_type=sa.Text, nullable=False)
    indicator: str = Field(sa_type=sa.Text, nullable=False)
    evidence: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    suggestion_uuids: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    patient_hash: str = Field(sa_type=sa.Text, nullable=False)


class Feedback(SQLModel, table=True):
    """One feedback item. ``identity`` makes a repeated item a no-op (interface.md decision 6).

    ``card_uuid`` is deliberately not a foreign key: feedback about an unknown card is stored
    too (flagged ``known_card`` false), and a card may still be in the audit queue.
    """

    __tablename__ = "feedback"
    __table_args__ = (
        sa.UniqueConstraint("identity", name="uq_feedback_identity"),
        sa.Index("ix_feedback_card_uuid", "card_uuid"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    identity: str = Field(sa_type=sa.Text, nullable=False)
    card_uuid: str = Field(sa_type=sa.Text, nullable=False)
    service_id: str = Field(sa_type=sa.Text, nullable=False)
    outcome: str = Field(sa_type=sa.Text, nullable=False)
    accepted_suggestions: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    override_reason_code: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    override_reason_system: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    user_comment: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    outcome_timestamp: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)
    known_card: bool = Field(nullable=False)
    received_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)


class Suppression(SQLModel, table=True):
    """A rule silenced for one patient on the dates ``starts_on <= day < ends_before``.

    Written by a suppressing override (clinical-rules.md section 3); kept after it ends, as a record.
    """

    __tablename__ = "suppression"
    __table_args__ = (
        sa.UniqueConstraint("feedback_id", name="uq_suppression_feedback_id"),
        sa.Index("ix_suppression_patient_hash_ends_before", "patient_hash", "ends_before"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    patient_hash: str = Field(sa_type=sa.Text, nullable=False)
    rule_id: str = Field(sa_type=sa.Text, nullable=False)
    starts_on: date = Field(nullable=False)
    ends_before: date = Field(nullable=False)
    feedback_id: int = Field(
        sa_type=_ID,
        sa_column_args=[sa.ForeignKey("feedback.id", name="fk_suppression_feedback_id", ondelete="CASCADE")],
        nullable=False,
    )


class SeenJwt(SQLModel, table=True):
    """A JWT id already used by an issuer: a second use is a replay. Pruned once expired."""

    __tablename__ = "seen_jwt"
    __table_args__ = (
        sa.UniqueConstraint("issuer", "jti", name="uq_seen_jwt_issuer_jti"),
        sa.Index("ix_seen_jwt_expires_at", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    issuer: str = Field(sa_type=sa.Text, nullable=False)
    jti: str = Field(sa_type=sa.Text, nullable=False)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)
