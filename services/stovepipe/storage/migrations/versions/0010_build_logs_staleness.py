"""Build logs of failed targets, and staleness episodes of Queues.

``build_logs`` keeps the (redacted, size-bounded) output of each failed target
per Request attempt, so a red verdict can be explained after the runner's own
work directory is gone and after a restart; rows older than the retention
setting are pruned.

``queue_staleness``: whether each Queue is in breach of its staleness objective.

One row per Queue that has ever been judged stale. The transition of ``stale``
is a conditional update (or a first insert), so among several API replicas
judging the same Queue exactly one wins each transition and announces it: a
``dev.stovepipe.queue.stale`` event once per episode, ``…queue.fresh`` once at
its end.

Revision ID: 0010_build_logs_staleness
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

QUEUE = 128  # written out, not imported: a migration is frozen in time
NAME = 256


def upgrade() -> None:
    op.create_table(
        "build_logs",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("request_id", sa.String(NAME), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(NAME), nullable=False),
        sa.Column("build_id", sa.String(NAME), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "request_id", "attempt", "target", name="pk_build_logs"),
    )
    op.create_index("ix_build_logs_created_at", "build_logs", ["created_at"])
    op.create_table(
        "queue_staleness",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", name="pk_queue_staleness"),
    )


def downgrade() -> None:
    op.drop_table("queue_staleness")
    op.drop_index("ix_build_logs_created_at", table_name="build_logs")
    op.drop_table("build_logs")
