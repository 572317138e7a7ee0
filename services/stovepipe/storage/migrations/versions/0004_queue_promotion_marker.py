"""Queues remember where their promotion ref was last put.

``promoted_ref`` and ``promoted_uri`` are written after a Promote of the
bookmark succeeded. The sweeper compares them with the bookmark and the
configured ref and calls Promote only for a Queue whose ref lags, instead of
for every idle Queue on every pass. Existing Queues start with neither, so each
gets one Promote (a no-op where the ref is in place) and is then remembered.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME = 256
URI = 1024


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("promoted_ref", sa.String(NAME), nullable=True))
        batch.add_column(sa.Column("promoted_uri", sa.String(URI), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("promoted_uri")
        batch.drop_column("promoted_ref")
