"""The pool hands out no dead connection without pinging on every checkout.

The engine no longer runs ``SELECT 1`` before each call (it cost a fifth of
the gate path). These tests kill every pooled connection on the server side
(``pg_terminate_backend``, the same as a restart from a client's view) and
check that the very next read and write still succeed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from stovepipe.domain import Request, RequestState
from stovepipe.storage import StorageUnavailable, Store, create_engine

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"


async def _terminate_stovepipe_backends(url: str) -> int:
    """Kill every connection the store holds to ``url``'s database and wait until they are gone.

    ``pg_terminate_backend`` only signals the backend; the wait (on the
    server's own view, generous deadline) makes the kill complete before the
    test goes on. Returns how many were killed.
    """
    parsed = make_url(url).set(drivername="postgresql")
    ours = (
        "FROM pg_stat_activity WHERE datname = $1 AND application_name = 'stovepipe' "
        "AND pid <> pg_backend_pid()"
    )
    admin = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        killed = await admin.fetchval(
            f"SELECT count(*) FROM (SELECT pg_terminate_backend(pid) {ours}) t", parsed.database
        )
        deadline = asyncio.get_running_loop().time() + 60
        while await admin.fetchval(f"SELECT count(*) {ours}", parsed.database):
            assert asyncio.get_running_loop().time() < deadline, "backends never exited"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    return int(killed)


async def _write_with_one_retry(store: Store) -> tuple[Request, bool]:
    """A write may fail once, retryably, if its connection died after checkout; never twice."""
    try:
        return await store.create_request(Q, "git:b", trigger="t", now=NOW)
    except StorageUnavailable:
        return await store.create_request(Q, "git:b", trigger="t", now=NOW)


async def _pooled_connections(store: Store) -> int:
    pool = store.engine.sync_engine.pool
    return int(pool.checkedin())  # type: ignore[attr-defined]


async def test_reads_and_writes_succeed_right_after_every_pooled_connection_is_killed(
    migrated_pg_url: str,
) -> None:
    store = Store(create_engine(migrated_pg_url, pool_size=4))
    try:
        await store.ensure_queue(Q, now=NOW)
        first, _ = await store.create_request(Q, "git:a", trigger="t", now=NOW)
        assert await _pooled_connections(store) >= 1
        assert await _terminate_stovepipe_backends(migrated_pg_url) >= 1
        # A read on a killed connection: served, not StorageUnavailable.
        assert await store.get_request(first.id) == first
        assert await _terminate_stovepipe_backends(migrated_pg_url) >= 1
        second, created = await _write_with_one_retry(store)
        assert created and second.state is RequestState.ACCEPTED
        assert await _terminate_stovepipe_backends(migrated_pg_url) >= 1
        # The gate path's own statement.
        found = await store.get_last_green(Q)
        assert found is not None and found[0].name == Q
    finally:
        await store.close()


async def test_the_pool_never_grows_past_its_configured_size(migrated_pg_url: str) -> None:
    """64 concurrent reads through a pool of 3 all succeed, queued for a connection."""
    store = Store(create_engine(migrated_pg_url, pool_size=3))
    try:
        request, _ = await store.create_request(Q, "git:a", trigger="t", now=NOW)
        results = await asyncio.gather(*(store.get_request(request.id) for _ in range(64)))
        assert all(r == request for r in results)
        pool = store.engine.sync_engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        assert pool.overflow() <= 0  # type: ignore[attr-defined]
    finally:
        await store.close()
