"""PACS: where a prediction's image came from (`predictions.source`, NULL for uploads) and the
watcher's state, one row per (PACS, series, model) and one per instance done, so a series is run
once across restarts and a series cut short resumes where it stopped.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("source", sa.JSON(), nullable=True))
    op.create_table(
        "pacs_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pacs", sa.String(256), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_uuid", sa.String(64), nullable=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("updated", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pacs_series"),
        sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed', 'skipped')",
                           name="ck_pacs_series_status"),
        sa.UniqueConstraint("pacs", "series_uid", "model_name",
                            name="uq_pacs_series_pacs_series_uid_model_name"),
    )
    op.create_index("ix_pacs_series_status", "pacs_series", ["status"])
    op.create_index("ix_pacs_series_study_uid", "pacs_series", ["study_uid"])
    op.create_table(
        "pacs_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("prediction_id", sa.String(32), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["pacs_series.id"],
                                name="fk_pacs_instances_series_id_pacs_series"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"],
                                name="fk_pacs_instances_prediction_id_predictions"),
        sa.PrimaryKeyConstraint("id", name="pk_pacs_instances"),
        sa.UniqueConstraint("series_id", "sop_uid", name="uq_pacs_instances_series_id_sop_uid"),
    )
    op.create_index("ix_pacs_instances_series_id", "pacs_instances", ["series_id"])


def downgrade() -> None:
    op.drop_index("ix_pacs_instances_series_id", table_name="pacs_instances")
    op.drop_table("pacs_instances")
    op.drop_index("ix_pacs_series_study_uid", table_name="pacs_series")
    op.drop_index("ix_pacs_series_status", table_name="pacs_series")
    op.drop_table("pacs_series")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("source")
