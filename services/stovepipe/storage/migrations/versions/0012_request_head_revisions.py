"""The VCS-native revision of each Request's head, as SourceControl described it at ingest.

Ingest already asks SourceControl to describe the head (for its title); the
answer also names the revision a runner checks out. Keeping it lets the build
stage hand it to the runner in ``Trigger``, which then does not ask
SourceControl a second time. Rows written before this revision have an empty
one, and the runner asks as it did before.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

REVISION = 256  # written out, not imported: a migration is frozen in time


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("head_revision", sa.String(REVISION), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("head_revision")
