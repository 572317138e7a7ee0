"""Facts are immutable in the database too: UPDATE and DELETE of a fact raise.

The code only ever inserts facts (create-only, first writer wins); these
triggers make the database refuse anything else, so a bug, a hand-written
repair or a compromised writer cannot turn a broken commit green in place.
PostgreSQL gets one function and row triggers for UPDATE and DELETE plus a
statement trigger for TRUNCATE (which fires no row triggers); SQLite gets
``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers that ``RAISE(ABORT, …)``.

A later migration that rebuilds ``validation_facts`` in batch mode (a table
copy on SQLite) drops these triggers with the old table and must create them
again; ``downgrade`` drops them first so that the downgrades below it (0002 deletes facts) can run.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MESSAGE = "validation_facts are immutable: a fact is never updated or deleted"

_PG_FUNCTION = f"""
CREATE FUNCTION validation_facts_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for name, event, level in (
            ("validation_facts_no_update", "UPDATE", "ROW"),
            ("validation_facts_no_delete", "DELETE", "ROW"),
            ("validation_facts_no_truncate", "TRUNCATE", "STATEMENT"),
        ):
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON validation_facts "
                f"FOR EACH {level} EXECUTE FUNCTION validation_facts_immutable()"
            )
        return
    for name, event in (
        ("validation_facts_no_update", "UPDATE"),
        ("validation_facts_no_delete", "DELETE"),
    ):
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON validation_facts "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in (
            "validation_facts_no_update",
            "validation_facts_no_delete",
            "validation_facts_no_truncate",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON validation_facts")
        op.execute("DROP FUNCTION IF EXISTS validation_facts_immutable()")
        return
    for name in ("validation_facts_no_update", "validation_facts_no_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
