"""``stovepipe db upgrade``: Alembic driven from code, no alembic.ini needed.

Both functions are synchronous (Alembic's env runs its own event loop); call
them from a thread when already inside one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from stovepipe.storage.engine import create_engine, normalize_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema at ``url`` to ``revision``; idempotent."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    async def read() -> str | None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def rev(sync_conn: Connection) -> str | None:
                    return MigrationContext.configure(sync_conn).get_current_revision()

                return await conn.run_sync(rev)
        finally:
            await engine.dispose()

    return asyncio.run(read())
