"""Driver failures become storage errors with the right retry class; engines are set up as documented."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from stovepipe.domain import InvalidInput
from stovepipe.runtime.processes import free_port
from stovepipe.storage import (
    AlreadyExists,
    StorageError,
    StorageUnavailable,
    Store,
    VersionMismatch,
    create_engine,
    is_retryable,
    normalize_url,
)
from stovepipe.storage.migrate import upgrade_async

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"


def test_retry_classes_of_storage_errors() -> None:
    assert is_retryable(VersionMismatch("lost the race"))
    assert is_retryable(StorageUnavailable("down"))
    assert is_retryable(ConnectionRefusedError(111, "refused"))
    assert is_retryable(TimeoutError())
    assert not is_retryable(AlreadyExists("there", existing=None))
    assert not is_retryable(StorageError("no such table"))
    assert not is_retryable(InvalidInput("bad"))
    assert not is_retryable(ValueError("not ours"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/sp", "postgresql+asyncpg://u:p@db:5432/sp"),
        ("postgres://db/sp", "postgresql+asyncpg://db/sp"),
        ("postgresql+asyncpg://db/sp", "postgresql+asyncpg://db/sp"),
        ("sqlite:///var/sp.db", "sqlite+aiosqlite:///var/sp.db"),
        ("sqlite+aiosqlite:////abs/sp.db", "sqlite+aiosqlite:////abs/sp.db"),
    ],
)
def test_urls_are_normalised_to_the_async_drivers(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://db/sp", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_url(url)


async def test_sqlite_connections_get_the_pragmas(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, sqlite_busy_timeout_s=7.5)
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 7500,
        "foreign_keys": 1,
        "synchronous": 1,
    }


async def test_a_sqlite_file_in_a_missing_directory_is_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'nested' / 'stovepipe.db'}"
    await upgrade_async(url)
    store = Store(create_engine(url))
    try:
        assert (await store.ensure_queue(Q, now=NOW)).version == 1
    finally:
        await store.close()
    assert (tmp_path / "state" / "nested" / "stovepipe.db").is_file()


async def test_an_unreachable_postgres_is_unavailable_and_retryable() -> None:
    store = Store(create_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"))
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await store.get_queue(Q)
    finally:
        await store.close()
    assert is_retryable(raised.value)


async def test_a_sqlite_writer_past_its_busy_timeout_is_unavailable(
    migrated_sqlite_url: str,
) -> None:
    sqlite_url = migrated_sqlite_url
    path = make_url(sqlite_url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    store = Store(create_engine(sqlite_url, sqlite_busy_timeout_s=0.2))
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable, match="locked") as raised:
            await store.next_request_number(Q)
        assert is_retryable(raised.value)
        assert await store.get_queue(Q) is None
        holder.execute("ROLLBACK")
        assert await store.next_request_number(Q) == 1
    finally:
        holder.close()
        await store.close()


async def test_an_unmigrated_database_is_a_storage_error_that_does_not_retry(
    store_url: str,
) -> None:
    store = Store(create_engine(store_url))
    try:
        with pytest.raises(StorageError) as raised:
            await store.get_queue(Q)
    finally:
        await store.close()
    assert type(raised.value) is StorageError
    assert not is_retryable(raised.value)
    assert "queues" in str(raised.value)


@pytest.mark.postgres
async def test_postgres_connections_killed_under_the_pool_are_replaced(
    migrated_pg_url: str, postgres_url: str
) -> None:
    store = Store(create_engine(migrated_pg_url))
    admin = create_engine(postgres_url)
    database = make_url(migrated_pg_url).database
    try:
        await store.ensure_queue(Q, now=NOW)
        async with admin.begin() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) "
                        "FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                )
            ).scalar_one()
        assert killed >= 1
        queue = await store.get_queue(Q)
        assert queue is not None and queue.version == 1
    finally:
        await store.close()
        await admin.dispose()
