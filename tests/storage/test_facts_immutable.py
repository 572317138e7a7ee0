"""A stored fact cannot be changed or removed, even by raw SQL (migration 0005)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import alembic_config

FACT = ValidationFact(
    queue="q/main",
    uri="git:a",
    project="",
    degree=1.0,
    request_id="request/q/main/1",
    origin=FactOrigin.BUILD,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    reason="unit failed",
)

TAMPERING = [
    "UPDATE validation_facts SET degree = 0",
    "UPDATE validation_facts SET reason = 'fine really' WHERE uri = 'git:a'",
    "DELETE FROM validation_facts",
    "DELETE FROM validation_facts WHERE uri = 'git:a'",
]


@pytest.mark.parametrize("statement", TAMPERING)
async def test_raw_updates_and_deletes_of_facts_fail(store: Store, statement: str) -> None:
    await store.create_fact(FACT)
    with pytest.raises(DBAPIError, match="immutable"):
        async with store.engine.begin() as conn:
            await conn.execute(text(statement))
    assert await store.get_fact(FACT.queue, FACT.uri, "") == FACT


async def test_truncate_fails_on_postgresql(migrated_pg_url: str) -> None:
    """PostgreSQL only: SQLite has no TRUNCATE (and no row trigger would see one)."""
    engine = create_engine(migrated_pg_url)
    try:
        store = Store(engine)
        await store.create_fact(FACT)
        with pytest.raises(DBAPIError, match="immutable"):
            async with store.engine.begin() as conn:
                await conn.execute(text("TRUNCATE validation_facts"))
        assert await store.get_fact(FACT.queue, FACT.uri, "") == FACT
    finally:
        await engine.dispose()


async def test_new_facts_and_first_writer_wins_still_work(store: Store) -> None:
    await store.create_fact(FACT)
    second = dataclasses.replace(FACT, attempt=2, degree=0.0, reason="")
    await store.create_fact(second)
    assert [f.attempt for f in await store.list_fact_attempts(FACT.queue, FACT.uri, "")] == [1, 2]


async def test_downgrading_below_0003_lifts_the_guard(
    store: Store, migrated_store_url: str
) -> None:
    await store.create_fact(FACT)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")

    engine = create_engine(migrated_store_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.begin() as conn:
            deleted = await conn.execute(text("DELETE FROM validation_facts"))
        assert deleted.rowcount == 1
    finally:
        await engine.dispose()
