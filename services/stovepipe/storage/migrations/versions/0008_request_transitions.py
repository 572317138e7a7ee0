"""Every state change of a Request is kept: ``request_transitions``.

``requests`` holds only the current state, so ``stovepipe status`` could not say
when a head was admitted, built or superseded, and a restart erased nothing but
also told nothing. One row per state change, keyed by the Request's version at
that change (a version is written once per Request, so a redelivered write
cannot add a second row), makes a Request's history durable and inspectable.
Existing Requests get one row for their current state, at their last update.

Revision ID: 0008_request_transitions
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

QUEUE = 128
STATE = 16


def upgrade() -> None:
    op.create_table(
        "request_transitions",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("n", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("state", sa.String(STATE), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "n", "version", name=op.f("pk_request_transitions")),
    )
    op.execute(
        "INSERT INTO request_transitions (queue, n, version, state, attempt, reason, at) "
        "SELECT queue, n, version, state, attempt, reason, updated_at FROM requests"
    )


def downgrade() -> None:
    op.drop_table("request_transitions")
