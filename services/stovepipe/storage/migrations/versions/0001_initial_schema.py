"""The initial schema: queues, counters, requests, dedup, builds, facts, hook deliveries.

Column lengths are written out rather than imported from ``tables.py``: a
revision must keep describing the schema as it was when it was written.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

QUEUE = 128
NAME = 256
URI = 1024
STATE = 16


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_green_uri", sa.String(URI), nullable=True),
        sa.Column("last_green_request_id", sa.String(NAME), nullable=True),
        sa.Column("latest_request_id", sa.String(NAME), nullable=True),
        sa.Column("slot_holders", sa.JSON(), nullable=False),
        sa.Column("in_flight_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_queues")),
    )
    op.create_table(
        "request_counters",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_request_counters")),
    )
    op.create_table(
        "requests",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("n", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(NAME), nullable=False),
        sa.Column("uri", sa.String(URI), nullable=False),
        sa.Column("state", sa.String(STATE), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(NAME), nullable=False),
        sa.Column("build_strategy", sa.String(STATE), nullable=True),
        sa.Column("base_uri", sa.String(URI), nullable=True),
        sa.Column("build_id", sa.String(NAME), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("slot_held", sa.Boolean(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "n", name=op.f("pk_requests")),
    )
    op.create_index(op.f("ix_requests_queue_state"), "requests", ["queue", "state"])
    op.create_index(op.f("ix_requests_state_updated_at"), "requests", ["state", "updated_at"])
    op.create_table(
        "request_dedup",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("uri", sa.String(URI), nullable=False),
        sa.Column("request_id", sa.String(NAME), nullable=False),
        sa.PrimaryKeyConstraint("queue", "uri", name=op.f("pk_request_dedup")),
    )
    op.create_table(
        "builds",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("build_id", sa.String(NAME), nullable=False),
        sa.Column("request_id", sa.String(NAME), nullable=False),
        sa.Column("project", sa.String(NAME), nullable=False),
        sa.Column("status", sa.String(STATE), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "build_id", name=op.f("pk_builds")),
    )
    op.create_table(
        "validation_facts",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("uri", sa.String(URI), nullable=False),
        sa.Column("project", sa.String(NAME), nullable=False),
        sa.Column("degree", sa.Float(), nullable=False),
        sa.Column("request_id", sa.String(NAME), nullable=False),
        sa.Column("origin", sa.String(STATE), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.CheckConstraint(
            "degree >= 0 AND degree <= 1",
            name=op.f("ck_validation_facts_degree_in_unit_interval"),
        ),
        sa.PrimaryKeyConstraint("queue", "uri", "project", name=op.f("pk_validation_facts")),
    )
    op.create_index(
        op.f("ix_validation_facts_queue_project_created_at_uri"),
        "validation_facts",
        ["queue", "project", "created_at", "uri"],
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("queue", sa.String(QUEUE), nullable=False),
        sa.Column("event_id", sa.String(NAME), nullable=False),
        sa.Column("hook", sa.String(NAME), nullable=False),
        sa.Column("status", sa.String(STATE), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "event_id", "hook", name=op.f("pk_hook_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("hook_deliveries")
    op.drop_index(op.f("ix_validation_facts_queue_project_created_at_uri"), "validation_facts")
    op.drop_table("validation_facts")
    op.drop_table("builds")
    op.drop_table("request_dedup")
    op.drop_index(op.f("ix_requests_state_updated_at"), "requests")
    op.drop_index(op.f("ix_requests_queue_state"), "requests")
    op.drop_table("requests")
    op.drop_table("request_counters")
    op.drop_table("queues")
