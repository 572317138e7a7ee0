"""What the fault suite shares: a PostgreSQL cluster of its own, and one stack per module.

The suite crashes and restarts its database, so it never uses the session's
shared cluster; ``crash_safe`` keeps durable commits on, because an immediate
crash must not lose what was acknowledged. Each stack's database is a copy of
a template migrated once.

A test that asks for ``stack`` gets its module's stack, reset for it
(:meth:`FaultStack.reset`): faults lifted, every process back and ready, and
Queues of its own. Starting a stack (eleven processes) and stopping it cost
far more than a reset, and no test here needs a stack nobody used before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from harness.fault_stack import FaultStack, fault_stack
from harness.postgres import INSTALL_HINT, MigratedTemplate, PostgresCluster, PostgresUnavailable


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
async def fault_template(fault_postgres: PostgresCluster) -> str:
    """The name of a migrated template database on the fault cluster."""
    return (await MigratedTemplate(fault_postgres.url).prepare()).name


@pytest.fixture(scope="module")
async def module_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fault_postgres: PostgresCluster,
    fault_template: str,
) -> AsyncIterator[FaultStack]:
    """The module's stack, with a round of Queues for each of its tests that uses ``stack``."""
    rounds = len(
        [
            item
            for item in request.session.items
            if isinstance(item, pytest.Function)
            and item.module is request.module
            and "stack" in item.fixturenames
        ]
    )
    root = tmp_path_factory.mktemp("stack")
    options = getattr(request.module, "STACK_OPTIONS", {})  # e.g. {"projects": True}
    async with fault_stack(
        root, fault_postgres, rounds=max(rounds, 1), template=fault_template, **options
    ) as running:
        yield running


@pytest.fixture
async def stack(module_stack: FaultStack) -> FaultStack:
    """The product as a process tree (broker, extensions behind chaos proxies, workers, API),
    shared by the module and reset for this test."""
    await module_stack.reset()
    return module_stack
