"""PostgreSQL and storage fixtures.

``postgres_url`` (session) is the administration URL of one PostgreSQL server
for the whole run, taken from the first of:

1. ``STOVEPIPE_DATABASE_URL`` (the role needs CREATEDB: each test gets its own database);
2. a testcontainers ``postgres:15`` container, when ``docker info`` succeeds and
   testcontainers is importable;
3. a throwaway local PostgreSQL 15 cluster (``stovepipe.testing.postgres``).

It never skips: without PostgreSQL every test that needs it fails and says
what to install. Tests ask for ``pg_database_url`` (a fresh database),
``sqlite_url`` (a fresh file), or ``store`` / ``store_url``, which run once per
backend with ids ``[sqlite]`` and ``[postgres]``; only the ``[postgres]``
instances carry the ``postgres`` marker.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from plugins.announce import announce
from sqlalchemy.engine import make_url

from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.testing.postgres import INSTALL_HINT, PostgresCluster, PostgresUnavailable

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _testcontainers_postgres() -> Any | None:
    """testcontainers' PostgresContainer class, from whichever module this version has."""
    for module in ("testcontainers.community.postgres", "testcontainers.postgres"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            continue
        if found is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(module).PostgresContainer
    return None


@pytest.fixture(scope="session")
def postgres_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The administration URL (``postgresql+asyncpg://``) of the session's PostgreSQL server."""
    external = os.environ.get("STOVEPIPE_DATABASE_URL")
    if external:
        announce(pytestconfig, f"PostgreSQL: STOVEPIPE_DATABASE_URL at {_shown(external)}")
        yield external
        return
    container_class = _testcontainers_postgres() if _docker_answers() else None
    if container_class is not None:
        yield from _container(pytestconfig, container_class)
        return
    yield from _local_cluster(pytestconfig)


def _container(pytestconfig: pytest.Config, container_class: Any) -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        container = container_class("postgres:15", driver="asyncpg")
        try:
            container.start()
        except Exception as exc:
            pytest.fail(f"Docker answers, but the postgres:15 container did not start: {exc}")
    try:
        url = container.get_connection_url()
        announce(pytestconfig, f"PostgreSQL: testcontainers postgres:15 at {_shown(url)}")
        yield url
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            container.stop()


def _local_cluster(pytestconfig: pytest.Config) -> Iterator[str]:
    cluster = PostgresCluster()
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        cluster.destroy()
        pytest.fail(
            f"no PostgreSQL for the tests: STOVEPIPE_DATABASE_URL is unset, Docker does not "
            f"answer, and the local cluster failed: {exc}\nTo fix: {INSTALL_HINT}",
            pytrace=False,
        )
    announce(
        pytestconfig,
        f"PostgreSQL: throwaway local 15 cluster at {_shown(cluster.url)} (files in {cluster.root})",
    )
    try:
        yield cluster.url
    finally:
        cluster.destroy()


async def _admin(admin_url: str, sql: str) -> None:
    parsed = make_url(admin_url)
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


@asynccontextmanager
async def _fresh_database(admin_url: str) -> AsyncIterator[str]:
    name = f"stovepipe_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    async with _fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file in the test's tmp_path (not created until first use)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database URL, once per backend (``[sqlite]``, ``[postgres]``)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"
        return
    admin_url: str = request.getfixturevalue("postgres_url")
    async with _fresh_database(admin_url) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A migrated, empty ``Store`` (``store[sqlite]`` / ``store[postgres]``)."""
    await upgrade_async(store_url)
    engine = create_engine(store_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()
