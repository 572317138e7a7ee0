"""Facts per attempt: a re-validation adds a fact beside the old one.

The primary key of ``validation_facts`` grows an ``attempt`` column, so the
fact of each attempt of a Request is kept (nothing is overwritten) and reads
choose the authoritative one. Existing facts are attempt 1. SQLite cannot
change a primary key in place, hence batch mode (a table copy there, plain
``ALTER TABLE`` on PostgreSQL).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("validation_facts") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("validation_facts") as batch:
        batch.alter_column("attempt", server_default=None)
        batch.drop_constraint(op.f("pk_validation_facts"), type_="primary")
        batch.create_primary_key(
            op.f("pk_validation_facts"), ["queue", "uri", "project", "attempt"]
        )


def downgrade() -> None:
    # Keeps each commit's authoritative-by-age first attempt only; later attempts are dropped.
    op.execute("DELETE FROM validation_facts WHERE attempt > 1")
    with op.batch_alter_table("validation_facts") as batch:
        batch.drop_constraint(op.f("pk_validation_facts"), type_="primary")
        batch.create_primary_key(op.f("pk_validation_facts"), ["queue", "uri", "project"])
        batch.drop_column("attempt")
