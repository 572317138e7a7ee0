"""Per-project greenness: a last-green bookmark per (Queue, project), and the
commit an inherited fact carries forward.

``project_bookmarks`` is a new table (CAS on ``version`` like ``queues``).
``validation_facts`` gains ``inherited_from_uri`` with a plain ``ADD COLUMN``
(no batch table copy), so the immutability triggers of 0005 stay in place on
SQLite; existing facts read it as "" (not inherited).

Revision ID: 0009_projects
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

QUEUE = 128
NAME = 256
URI = 1024


def upgrade() -> None:
    op.create_table(
        "project_bookmarks",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("project", sa.String(NAME), nullable=False),
        sa.Column("last_green_uri", sa.String(URI), nullable=True),
        sa.Column("last_green_request_id", sa.String(NAME), nullable=True),
        sa.Column("promoted_uri", sa.String(URI), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "project", name=op.f("pk_project_bookmarks")),
    )
    op.add_column(
        "validation_facts",
        sa.Column("inherited_from_uri", sa.String(URI), nullable=False, server_default=""),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # DROP COLUMN on SQLite rebuilds nothing when no index or trigger names the
        # column; the 0005 triggers name none, so they stay.
        op.execute("ALTER TABLE validation_facts DROP COLUMN inherited_from_uri")
    else:
        op.drop_column("validation_facts", "inherited_from_uri")
    op.drop_table("project_bookmarks")
