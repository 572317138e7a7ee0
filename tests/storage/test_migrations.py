"""The Alembic migrations are the schema, on both backends."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from stovepipe.storage import create_engine
from stovepipe.storage.migrate import (
    alembic_config,
    current_revision,
    current_revision_async,
    upgrade,
    upgrade_async,
)
from stovepipe.storage.tables import metadata

TABLES = {
    "queues",
    "request_counters",
    "requests",
    "request_dedup",
    "poll_leases",
    "request_transitions",
    "builds",
    "validation_facts",
    "hook_deliveries",
    "hook_subscriptions_disabled",
    "project_bookmarks",
    "queue_staleness",
    "build_logs",
}


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def schema_differences(url: str) -> tuple[list[object], set[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def inspect_schema(sync_conn: Connection) -> tuple[list[object], set[str]]:
                diff = compare_metadata(MigrationContext.configure(sync_conn), metadata)
                return list(diff), set(inspect(sync_conn).get_table_names())

            return await conn.run_sync(inspect_schema)
    finally:
        await engine.dispose()


async def test_upgrade_builds_exactly_the_metadata_and_is_idempotent(store_url: str) -> None:
    assert await current_revision_async(store_url) is None
    await upgrade_async(store_url)
    assert await current_revision_async(store_url) == head_revision()
    await upgrade_async(store_url)
    assert await current_revision_async(store_url) == head_revision()
    diff, tables = await schema_differences(store_url)
    assert diff == []
    assert tables == TABLES | {"alembic_version"}


async def test_concurrent_upgrades_of_one_database_all_succeed(store_url: str) -> None:
    await asyncio.gather(*(upgrade_async(store_url) for _ in range(4)))
    assert await current_revision_async(store_url) == head_revision()
    diff, _ = await schema_differences(store_url)
    assert diff == []


async def test_the_synchronous_entry_points_work_outside_an_event_loop(store_url: str) -> None:
    def upgrade_and_read() -> str | None:
        upgrade(store_url)
        return current_revision(store_url)

    assert await asyncio.to_thread(upgrade_and_read) == head_revision()


async def test_facts_written_before_attempts_existed_become_attempt_one(store_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import text

    from stovepipe.domain import FactOrigin, ValidationFact
    from stovepipe.storage import Store

    await upgrade_async(store_url, "0001")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO validation_facts (queue, uri, project, degree, request_id,"
                    " origin, reason, created_at) VALUES ('q/main', 'git:a', '', 1.0,"
                    " 'request/q/main/1', 'fail_closed', 'runner gone', :at)"
                ),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    finally:
        await engine.dispose()
    await upgrade_async(store_url)
    store = Store(create_engine(store_url))
    try:
        old = await store.get_fact("q/main", "git:a", "")
        assert old is not None and old.attempt == 1 and old.origin is FactOrigin.FAIL_CLOSED
        green = ValidationFact(
            queue="q/main",
            uri="git:a",
            project="",
            degree=0.0,
            request_id="request/q/main/1",
            origin=FactOrigin.BUILD,
            created_at=datetime(2026, 1, 2, tzinfo=UTC),
            attempt=2,
        )
        await store.create_fact(green)
        assert await store.get_fact("q/main", "git:a", "") == green
        assert [f.attempt for f in await store.list_fact_attempts("q/main", "git:a", "")] == [1, 2]
    finally:
        await store.close()


async def test_requests_lose_slot_held_and_get_it_back_on_downgrade(store_url: str) -> None:
    """0003 drops the write-only ``slot_held``; the Queue's slot holders are the record."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import text

    from stovepipe.domain import RequestState
    from stovepipe.storage import Store

    at = datetime(2026, 1, 1, tzinfo=UTC)
    await upgrade_async(store_url, "0002")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            for n, state in ((1, "succeeded"), (2, "processing")):
                await conn.execute(
                    text(
                        "INSERT INTO requests (queue, n, id, uri, state, version, trigger,"
                        " reason, attempt, slot_held, created_at, updated_at) VALUES"
                        " ('q/main', :n, :id, :uri, :state, 1, 'poller', '', 1, :held, :at, :at)"
                    ),
                    {
                        "n": n,
                        "id": f"request/q/main/{n}",
                        "uri": f"git:{n}",
                        "state": state,
                        "held": state == "processing",
                        "at": at,
                    },
                )
            await conn.execute(text("INSERT INTO request_counters VALUES ('q/main', 2)"))
    finally:
        await engine.dispose()
    await upgrade_async(store_url)
    store = Store(create_engine(store_url))
    try:
        old = await store.get_request("request/q/main/2")
        assert old is not None and old.state is RequestState.PROCESSING
        new, _ = await store.create_request("q/main", "git:3", trigger="cli", now=at)
        assert (await store.get_request(new.id)) == new
    finally:
        await store.close()

    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:

            def downgrade(sync_conn: Connection) -> list[tuple[int, bool]]:
                config = alembic_config()
                config.attributes["connection"] = sync_conn
                command.downgrade(config, "0002")
                rows = sync_conn.execute(text("SELECT n, slot_held FROM requests ORDER BY n"))
                return [(n, bool(held)) for n, held in rows]

            assert await conn.run_sync(downgrade) == [(1, False), (2, True), (3, False)]
    finally:
        await engine.dispose()


async def test_requests_from_before_transitions_get_their_current_state_as_history(
    store_url: str,
) -> None:
    """0008 backfills one transition per existing Request; later changes add their own."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from sqlalchemy import text

    from stovepipe.domain import RequestState
    from stovepipe.storage import Store

    await upgrade_async(store_url, "0005")
    store = Store(create_engine(store_url))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO requests (queue, n, id, uri, state, version, trigger, reason,"
                    " attempt, created_at, updated_at) VALUES ('q/main', 1, 'request/q/main/1',"
                    " 'git:a', 'processing', 2, 'cli', 'admitted', 1, :at, :at)"
                ),
                {"at": at},
            )
    finally:
        await store.close()
    await upgrade_async(store_url)
    store = Store(create_engine(store_url))
    try:
        (old,) = await store.list_transitions("request/q/main/1")
        assert (old.state, old.version, old.reason, old.at) == (
            RequestState.PROCESSING,
            2,
            "admitted",
            at,
        )
        request = await store.get_request("request/q/main/1")
        assert request is not None
        done = replace(request, state=RequestState.SUCCEEDED, version=3, reason="built")
        await store.update_request(request, done)
        states = [t.state for t in await store.list_transitions("request/q/main/1")]
        assert states == [RequestState.PROCESSING, RequestState.SUCCEEDED]
    finally:
        await store.close()
