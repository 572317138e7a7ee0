"""Table definitions; the migrations in ``migrations/versions`` create exactly these.

Every primary key leads with the queue name, so the data can be sharded by
Queue. Constraint and index names come from the naming convention below, so
they are the same on every backend and a later migration can refer to them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from stovepipe.domain import MAX_QUEUE_NAME_LENGTH
from stovepipe.domain.errors import InvalidInput

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

QUEUE = MAX_QUEUE_NAME_LENGTH
NAME = 256
URI = 1024
STATE = 16
TITLE = 256
REVISION = 256


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored and returned in UTC on every backend.

    SQLite has no time zones: it would keep the wall-clock digits of whatever
    offset it was given and hand back a naive value. Converting to UTC on the
    way in and tagging UTC on the way out makes both backends agree, and keeps
    SQLite's text timestamps in an order that compares correctly. A naive
    datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"datetime {value.isoformat()} has no time zone; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


queues = Table(
    "queues",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_green_uri", String(URI)),
    Column("last_green_request_id", String(NAME)),
    Column("latest_request_id", String(NAME)),
    Column("slot_holders", JSON, nullable=False),
    Column("in_flight_count", Integer, nullable=False),
    Column("promoted_ref", String(NAME)),
    Column("promoted_uri", String(URI)),
    Column("updated_at", UtcDateTime, nullable=False),
)

request_counters = Table(
    "request_counters",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("value", Integer, nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("id", String(NAME), nullable=False),
    Column("uri", String(URI), nullable=False),
    Column("state", String(STATE), nullable=False),
    Column("version", Integer, nullable=False),
    Column("trigger", String(NAME), nullable=False),
    Column("build_strategy", String(STATE)),
    Column("base_uri", String(URI)),
    Column("build_id", String(NAME)),
    Column("reason", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("trigger_details", JSON),
    Column("upstream_greens", JSON),
    Column("title", String(TITLE), nullable=False, server_default=""),
    Column("head_revision", String(REVISION), nullable=False, server_default=""),
)
Index(None, requests.c.queue, requests.c.state)
Index(None, requests.c.state, requests.c.updated_at)

request_transitions = Table(
    "request_transitions",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("state", String(STATE), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

request_dedup = Table(
    "request_dedup",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("uri", String(URI), primary_key=True),
    Column("request_id", String(NAME), nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("build_id", String(NAME), primary_key=True),
    Column("request_id", String(NAME), nullable=False),
    Column("project", String(NAME), nullable=False),
    Column("status", String(STATE), nullable=False),
    Column("targets", JSON, nullable=False),
    Column("message", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

validation_facts = Table(
    "validation_facts",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("uri", String(URI), primary_key=True),
    Column("project", String(NAME), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("degree", Float, nullable=False),
    Column("request_id", String(NAME), nullable=False),
    Column("origin", String(STATE), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("upstream_greens", JSON),
    Column("inherited_from_uri", String(URI), nullable=False, server_default=""),
    CheckConstraint("degree >= 0 AND degree <= 1", name="degree_in_unit_interval"),
)
Index(
    None,
    validation_facts.c.queue,
    validation_facts.c.project,
    validation_facts.c.created_at,
    validation_facts.c.uri,
)

project_bookmarks = Table(
    "project_bookmarks",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("project", String(NAME), primary_key=True),
    Column("last_green_uri", String(URI)),
    Column("last_green_request_id", String(NAME)),
    Column("promoted_uri", String(URI)),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

hook_deliveries = Table(
    "hook_deliveries",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("event_id", String(NAME), primary_key=True),
    Column("hook", String(NAME), primary_key=True),
    Column("status", String(STATE), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("event_type", String(NAME), nullable=False, server_default=""),
    Column("event", LargeBinary, nullable=True),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
)
Index(
    "ix_hook_deliveries_due",
    hook_deliveries.c.status,
    hook_deliveries.c.queue,
    hook_deliveries.c.hook,
    hook_deliveries.c.position,
)
Index("ix_hook_deliveries_updated", hook_deliveries.c.updated_at)

hook_subscriptions_disabled = Table(
    "hook_subscriptions_disabled",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("hook", String(NAME), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=False),
)

poll_leases = Table(
    "poll_leases",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("holder", String(NAME), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("head_uri", String(URI)),
    Column("failures", Integer, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=False),
)

queue_staleness = Table(
    "queue_staleness",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("stale", Boolean, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

build_logs = Table(
    "build_logs",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("request_id", String(NAME), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("target", String(NAME), primary_key=True),
    Column("build_id", String(NAME), nullable=False),
    Column("content", Text, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
Index(None, build_logs.c.created_at)
