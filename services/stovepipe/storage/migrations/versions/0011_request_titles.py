"""The commit title of each Request, as SourceControl described it at ingest.

``stovepipe history`` and the console show what a commit *is* next to its id;
the title is read once, when the head is ingested, so reading history never
calls SourceControl. Rows written before this revision have an empty title.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TITLE = 256  # written out, not imported: a migration is frozen in time


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("title", sa.String(TITLE), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("title")
