"""Reviewer verdicts on predictions (agree / disagree + note) and when each API key was last used.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.String(32), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('agree', 'disagree')", name="ck_reviews_verdict"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"],
                                name="fk_reviews_prediction_id_predictions"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], name="fk_reviews_reviewer_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_prediction_id", "reviews", ["prediction_id"])
    op.create_index("ix_reviews_reviewer_id", "reviews", ["reviewer_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("last_used", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used")
    op.drop_index("ix_reviews_reviewer_id", table_name="reviews")
    op.drop_index("ix_reviews_prediction_id", table_name="reviews")
    op.drop_table("reviews")
