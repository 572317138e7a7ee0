"""Table definitions. Every primary key leads with the queue name (shardable by Queue)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

QUEUE = 128
URI = 1024
ID = 256

queues = Table(
    "queues",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_green_uri", String(URI)),
    Column("last_green_request_id", String(ID)),
    Column("latest_request_id", String(ID)),
    Column("slot_holders", JSON, nullable=False),
    Column("in_flight_count", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
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
    Column("id", String(ID), nullable=False, unique=True),
    Column("uri", String(URI), nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("trigger", String(64), nullable=False),
    Column("build_strategy", String(16)),
    Column("base_uri", String(URI)),
    Column("build_id", String(ID)),
    Column("reason", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("slot_held", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_requests_queue_state", "queue", "state"),
    Index("ix_requests_state_updated_at", "state", "updated_at"),
)

request_dedup = Table(
    "request_dedup",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("uri", String(URI), primary_key=True),
    Column("request_id", String(ID), nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("build_id", String(ID), primary_key=True),
    Column("request_id", String(ID), nullable=False),
    Column("project", String(QUEUE), nullable=False),
    Column("status", String(16), nullable=False),
    Column("targets", JSON, nullable=False),
    Column("message", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

validation_facts = Table(
    "validation_facts",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("uri", String(URI), primary_key=True),
    Column("project", String(QUEUE), primary_key=True),
    Column("degree", Float, nullable=False),
    Column("request_id", String(ID), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_validation_facts_listing", "queue", "project", "created_at"),
)

hook_deliveries = Table(
    "hook_deliveries",
    metadata,
    Column("queue", String(QUEUE), primary_key=True),
    Column("event_id", String(ID), primary_key=True),
    Column("hook", String(QUEUE), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
