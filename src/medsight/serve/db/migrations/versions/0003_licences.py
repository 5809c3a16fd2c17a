"""Offline licences issued to clinicians (bundle, machine, issue and expiry, renewal, revocation).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licences",
        sa.Column("licence_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("bundle_uuid", sa.String(64), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("machine", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("issued", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_from", sa.String(32), nullable=True),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_licences_user_id_users"),
        sa.ForeignKeyConstraint(["renewed_from"], ["licences.licence_id"],
                                name="fk_licences_renewed_from_licences"),
        sa.PrimaryKeyConstraint("licence_id", name="pk_licences"),
    )
    op.create_index("ix_licences_user_id", "licences", ["user_id"])
    op.create_index("ix_licences_issued", "licences", ["issued"])


def downgrade() -> None:
    op.drop_index("ix_licences_issued", table_name="licences")
    op.drop_index("ix_licences_user_id", table_name="licences")
    op.drop_table("licences")
