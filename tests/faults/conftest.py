"""What the fault suite shares: a PostgreSQL cluster of its own per module.

The suite crashes and restarts its database, so it never uses the session's
shared cluster; ``crash_safe`` keeps durable commits on, because an immediate
crash must not lose what was acknowledged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stovepipe.testing.fault_stack import FaultStack, fault_stack
from stovepipe.testing.postgres import INSTALL_HINT, PostgresCluster, PostgresUnavailable


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(crash_safe=True)
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        cluster.destroy()
        pytest.fail(f"the fault suite needs a local PostgreSQL 15: {exc}\n{INSTALL_HINT}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def stack(tmp_path: Path, fault_postgres: PostgresCluster) -> AsyncIterator[FaultStack]:
    """The product as a process tree (broker, extensions behind chaos proxies, workers, API)."""
    async with fault_stack(tmp_path, fault_postgres) as running:
        yield running
