"""Schema migrations (Alembic), driven from code: no ``alembic.ini`` is needed.

:func:`upgrade` and :func:`current_revision` are synchronous, for the CLI:
they run their own event loop, so from async code call :func:`upgrade_async`
and :func:`current_revision_async` instead (or the sync ones in a thread).

Concurrent upgrades of one database are serialised (a transaction-scoped
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so several
processes may all run ``upgrade`` at start-up; one migrates, the others find
the schema current.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from stovepipe.storage.engine import SQLITE_BEGIN_OPTION, create_engine, normalize_url
from stovepipe.storage.errors import translate

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "head"

# An arbitrary constant that names "the Stovepipe schema" for pg_advisory_xact_lock.
_PG_MIGRATION_LOCK = 0x5707E_0001


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations (for ``alembic.command`` calls)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


async def upgrade_async(url: str, revision: str = HEAD) -> None:
    """Create or migrate the schema at ``url`` to ``revision``; a no-op when it is there."""
    async with _migration_connection(url) as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        await conn.run_sync(_upgrade, revision)


async def current_revision_async(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before the first upgrade."""
    async with _migration_connection(url) as conn:
        return await conn.run_sync(_current_revision)


def upgrade(url: str, revision: str = HEAD) -> None:
    """Synchronous :func:`upgrade_async`; raises ``RuntimeError`` inside a running event loop."""
    asyncio.run(upgrade_async(url, revision))


def current_revision(url: str) -> str | None:
    """Synchronous :func:`current_revision_async`."""
    return asyncio.run(current_revision_async(url))


@asynccontextmanager
async def _migration_connection(url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            async with conn.begin():
                yield conn
    except Exception as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
