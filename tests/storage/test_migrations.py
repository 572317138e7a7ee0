"""The Alembic migration is the schema, on both backends."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from stovepipe.storage import create_engine
from stovepipe.storage.migrate import current_revision, upgrade
from stovepipe.storage.tables import metadata

pytestmark = pytest.mark.postgres


async def test_upgrade_creates_the_schema_idempotently_and_matches_the_metadata(
    store_url: str,
) -> None:
    await asyncio.to_thread(upgrade, store_url)
    await asyncio.to_thread(upgrade, store_url)
    assert await asyncio.to_thread(current_revision, store_url) == "0001"
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: Connection) -> list[object]:
                return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

            def tables(sync_conn: Connection) -> set[str]:
                return set(inspect(sync_conn).get_table_names())

            assert await conn.run_sync(diff) == []
            assert {
                "queues",
                "request_counters",
                "requests",
                "request_dedup",
                "builds",
                "validation_facts",
                "hook_deliveries",
            } <= await conn.run_sync(tables)
    finally:
        await engine.dispose()
