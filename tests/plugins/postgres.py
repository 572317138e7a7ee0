"""PostgreSQL and storage fixtures.

``postgres_server`` honours ``STOVEPIPE_DATABASE_URL``; otherwise it uses
testcontainers when a Docker engine answers, and a throwaway local cluster
when not. It never skips: without PostgreSQL the tests fail and say what to
install.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from plugins.announce import announce
from sqlalchemy.engine import make_url

from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade
from stovepipe.testing.postgres import PostgresCluster, PostgresUnavailable


@dataclass
class PostgresServer:
    admin_url: str
    description: str

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=10)
    return done.returncode == 0


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    url = os.environ.get("STOVEPIPE_DATABASE_URL")
    if url:
        announce(
            pytestconfig,
            f"PostgreSQL: using STOVEPIPE_DATABASE_URL ({make_url(url).render_as_string()})",
        )
        yield PostgresServer(url, "external")
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="asyncpg") as container:
            url = container.get_connection_url()
            announce(
                pytestconfig,
                f"PostgreSQL: testcontainers postgres:15 at {make_url(url).render_as_string()}",
            )
            yield PostgresServer(url, "testcontainers")
        return
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot start PostgreSQL for the tests: {exc}", pytrace=False)
    announce(
        pytestconfig,
        f"PostgreSQL 15: started a throwaway cluster at 127.0.0.1:{cluster.port} ({cluster.root})",
    )
    try:
        yield PostgresServer(cluster.url, "local cluster")
    finally:
        cluster.destroy()


async def _admin(url: str, sql: str) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database per test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _admin(postgres_server.admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url_for(name)
    finally:
        await _admin(postgres_server.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"
        return
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _admin(postgres_server.admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url_for(name)
    finally:
        await _admin(postgres_server.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A migrated, empty ``Store`` on each backend (ids ``store[sqlite]`` / ``store[postgres]``)."""
    await asyncio.to_thread(upgrade, store_url)
    engine = create_engine(store_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()
