"""Poll leases, trigger details on Requests, upstream greens on Requests and facts.

``poll_leases`` holds one row per polled Queue: which poller replica holds it
(acquired by compare-and-swap, so one replica polls a Queue at a time) and
until when, the head it last saw, and the Queue's backoff after SourceControl
errors. ``requests.trigger_details`` says what the trigger said
about itself; ``upstream_greens`` (on Requests and facts) records the green
commits of the Queues a Queue ``depends_on`` that it was built against.

Adding a nullable column to ``validation_facts`` is an ALTER, not a rebuild,
on both backends (no batch mode), so the immutability triggers of 0005 stay.

Revision ID: 0007_poll_leases_triggers
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stovepipe.storage.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

QUEUE = 128
NAME = 256
URI = 1024


def upgrade() -> None:
    op.create_table(
        "poll_leases",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("holder", sa.String(NAME), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("head_uri", sa.String(URI), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name="pk_poll_leases"),
    )
    op.add_column("requests", sa.Column("trigger_details", sa.JSON(), nullable=True))
    op.add_column("requests", sa.Column("upstream_greens", sa.JSON(), nullable=True))
    op.add_column("validation_facts", sa.Column("upstream_greens", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place; no table copy, so 0005's triggers stay.
        op.execute("ALTER TABLE validation_facts DROP COLUMN upstream_greens")
        op.execute("ALTER TABLE requests DROP COLUMN upstream_greens")
        op.execute("ALTER TABLE requests DROP COLUMN trigger_details")
    else:
        op.drop_column("validation_facts", "upstream_greens")
        op.drop_column("requests", "upstream_greens")
        op.drop_column("requests", "trigger_details")
    op.drop_table("poll_leases")
