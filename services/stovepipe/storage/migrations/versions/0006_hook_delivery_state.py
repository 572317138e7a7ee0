"""Hook deliveries carry what the dispatcher needs to deliver, retry and show them.

``hook_deliveries`` existed since 0001 with a status and an attempt count only.
The dispatcher now delivers from storage, not from the topic: a row holds the
event itself (``event``, the serialized ``HookEvent``, so a redelivery sends
the very same bytes and id), its type, its place in the Queue's event order
(``position``), when the next attempt is due and when it was delivered.
``hook_subscriptions_disabled`` remembers a subscription whose target answered
410 Gone until an operator redelivers to it.

Revision ID: 0006_hook_delivery_state
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME = 256
QUEUE = 128


def upgrade() -> None:
    with op.batch_alter_table("hook_deliveries") as batch:
        batch.add_column(
            sa.Column("event_type", sa.String(NAME), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("event", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_hook_deliveries_due",
        "hook_deliveries",
        ["status", "queue", "hook", "position"],
    )
    op.create_index("ix_hook_deliveries_updated", "hook_deliveries", ["updated_at"])
    op.create_table(
        "hook_subscriptions_disabled",
        sa.Column("queue", sa.String(QUEUE), primary_key=True),
        sa.Column("hook", sa.String(NAME), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hook_subscriptions_disabled")
    op.drop_index("ix_hook_deliveries_updated", table_name="hook_deliveries")
    op.drop_index("ix_hook_deliveries_due", table_name="hook_deliveries")
    with op.batch_alter_table("hook_deliveries") as batch:
        batch.drop_column("delivered_at")
        batch.drop_column("next_attempt_at")
        batch.drop_column("position")
        batch.drop_column("event")
        batch.drop_column("event_type")
