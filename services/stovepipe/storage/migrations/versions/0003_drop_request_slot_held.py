"""Requests lose ``slot_held``: the Queue's slot holders are the one record of a slot.

The flag was written at admission and on settling but read nowhere, and as a
second copy of ``queues.slot_holders`` kept in another row it could disagree
with it after a crash between the two writes. Who holds a build slot is the
Queue's ``slot_holders`` set, which every slot operation reads and writes
under CAS. SQLite cannot drop a column in place, hence batch mode.

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
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("slot_held")


def downgrade() -> None:
    # Restores what the flag meant: an admitted Request not yet settled holds a slot.
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("slot_held", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        sa.text("UPDATE requests SET slot_held = :held WHERE state = 'processing'").bindparams(
            held=True
        )
    )
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("slot_held", server_default=None)
