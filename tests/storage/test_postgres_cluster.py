"""The throwaway PostgreSQL cluster: clear failure without binaries, and restarts for fault injection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.postgres import PostgresCluster, PostgresUnavailable
from stovepipe.storage import StorageUnavailable, Store, create_engine, is_retryable
from stovepipe.storage.migrate import upgrade_async

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"


def test_missing_binaries_name_the_package_to_install(tmp_path: Path) -> None:
    cluster = PostgresCluster(bin_dir=tmp_path / "no-postgres-here")
    with pytest.raises(PostgresUnavailable, match=r"apt-get install postgresql-15"):
        cluster.start()
    with pytest.raises(PostgresUnavailable, match="not been started"):
        _ = cluster.root


@pytest.fixture
def private_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, which it may stop and start."""
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.mark.postgres
async def test_a_store_fails_retryably_while_postgres_is_down_and_recovers_after(
    private_cluster: PostgresCluster,
) -> None:
    root = private_cluster.root
    url = await asyncio.to_thread(private_cluster.create_database, "faults")
    await upgrade_async(url)
    store = Store(create_engine(url))
    try:
        first, _ = await store.create_request(Q, "git:a", trigger="t", now=NOW)
        await asyncio.to_thread(private_cluster.stop)
        assert not private_cluster.running
        with pytest.raises(StorageUnavailable) as raised:
            await store.get_request(first.id)
        assert is_retryable(raised.value)
        await asyncio.to_thread(private_cluster.start)
        assert private_cluster.running
        assert await store.get_request(first.id) == first
        await asyncio.to_thread(private_cluster.restart)
        second, created = await store.create_request(Q, "git:b", trigger="t", now=NOW)
        assert created and second.request_id.n == 2
    finally:
        await store.close()
    await asyncio.to_thread(private_cluster.destroy)
    assert not root.exists()
