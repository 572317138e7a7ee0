"""PostgreSQL and storage fixtures.

``postgres_url`` (session) is the administration URL of one PostgreSQL server
for the whole run, taken from the first of:

1. ``STOVEPIPE_DATABASE_URL`` (the role needs CREATEDB: each test gets its own database);
2. a testcontainers ``postgres:15`` container, when ``docker info`` succeeds and
   testcontainers is importable;
3. a throwaway local PostgreSQL 15 cluster (``harness.postgres``).

It never skips: without PostgreSQL every test that needs it fails and says
what to install.

Migrations run once per session per backend, into a template (a PostgreSQL
template database, a SQLite file); a test that wants a migrated database gets
a copy of it. Tests ask for

* ``migrated_pg_url`` (a fresh, migrated PostgreSQL database) or ``sqlite_url``
  (a path for a fresh SQLite file, not created);
* ``migrated_store_url`` / ``store`` (a migrated database URL / a ``Store`` on
  it) and ``store_url`` (an empty one, for the migration tests), each once per
  backend with ids ``[sqlite]`` and ``[postgres]``; only the ``[postgres]``
  instances carry the ``postgres`` marker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness.postgres import (
    INSTALL_HINT,
    MigratedTemplate,
    PostgresCluster,
    PostgresUnavailable,
    admin_execute,
)
from plugins.announce import announce
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async

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


@pytest.fixture(scope="session")
async def pg_template(postgres_url: str) -> AsyncIterator[MigratedTemplate]:
    """The session's migrated template on the session's server."""
    template = await MigratedTemplate(postgres_url).prepare()
    try:
        yield template
    finally:
        await template.discard()


@pytest.fixture
async def migrated_pg_url(pg_template: MigratedTemplate) -> AsyncIterator[str]:
    """A fresh, migrated database on the session's server, dropped after the test."""
    url = await pg_template.create()
    try:
        yield url
    finally:
        await pg_template.drop(url)


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session."""
    path = tmp_path_factory.mktemp("sqlite-template") / "stovepipe.db"
    await upgrade_async(f"sqlite+aiosqlite:///{path}")
    return path


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy whatever the journal (WAL) holds."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file in the test's tmp_path (not created until first use)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"


@pytest.fixture
def migrated_sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file (a copy of the session's template) in the test's tmp_path."""
    target = tmp_path / "stovepipe.db"
    _copy_sqlite(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database URL, once per backend (``[sqlite]``, ``[postgres]``)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stovepipe.db'}"
        return
    admin_url: str = request.getfixturevalue("postgres_url")
    name = f"stovepipe_{uuid.uuid4().hex[:12]}"
    await admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def migrated_store_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL (a copy of the session's template), once per backend.

    Synchronous on purpose: it asks for the backend's fixture only when that backend
    runs (so ``-m "not postgres"`` needs no server), and an async fixture must not
    set up another async one from inside the running loop.
    """
    backend = "migrated_sqlite_url" if request.param == "sqlite" else "migrated_pg_url"
    url: str = request.getfixturevalue(backend)
    return url


@pytest.fixture
async def store(migrated_store_url: str) -> AsyncIterator[Store]:
    """A migrated, empty ``Store`` (``store[sqlite]`` / ``store[postgres]``)."""
    engine = create_engine(migrated_store_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()
