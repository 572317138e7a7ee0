"""Staleness episodes: whether each Queue is in breach of its staleness objective.

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

revision = "0010_build_logs_staleness"
down_revision = "0005"
branch_labels = None
depends_on = None

QUEUE = 128  # written out, not imported: a migration is frozen in time


def upgrade() -> None:
    op.create_table(
        "queue_staleness",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", name="pk_queue_staleness"),
    )


def downgrade() -> None:
    op.drop_table("queue_staleness")
