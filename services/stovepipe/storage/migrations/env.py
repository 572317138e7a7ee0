"""Alembic environment for Stovepipe's schema.

``stovepipe.storage.migrate`` hands over a connection (taken from an async
engine with ``run_sync``) in ``config.attributes["connection"]``. When Alembic
is driven directly with only a URL (``alembic_config(url)``, e.g. to
autogenerate a new revision), this module opens its own async engine.
``render_as_batch`` lets SQLite alter tables by copying them.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from stovepipe.storage.engine import create_engine
from stovepipe.storage.tables import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run `stovepipe db upgrade`"
    )

given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    asyncio.run(run_with_own_engine(config.get_main_option("sqlalchemy.url") or ""))
