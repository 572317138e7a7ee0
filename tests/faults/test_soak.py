"""The randomized soak at CI size: a few scenarios of combined faults, zero violations.

``STOVEPIPE_SOAK_SEED`` replays another seed; ``make soak`` runs the larger size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stovepipe.testing.fault_stack import fault_stack
from stovepipe.testing.postgres import INSTALL_HINT, PostgresCluster, PostgresUnavailable
from stovepipe.testing.soak import FAULTS, run_soak

CI_SEED = 20261122
CI_SCENARIOS = 4


@pytest.fixture(scope="module")
def soak_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(crash_safe=True)
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        cluster.destroy()
        pytest.fail(f"the soak needs a local PostgreSQL 15: {exc}\n{INSTALL_HINT}")
    try:
        yield cluster
    finally:
        cluster.destroy()


async def test_soak_small(
    tmp_path: Path, soak_postgres: PostgresCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("STOVEPIPE_SOAK_SEED", CI_SEED))
    async with fault_stack(tmp_path, soak_postgres) as stack:
        report = await run_soak(
            stack, seed=seed, scenarios=CI_SCENARIOS, max_seconds=400, progress=print
        )
    with capsys.disabled():
        print("\n[stovepipe soak] " + "\n[stovepipe soak] ".join(report.lines()))
    assert report.violations == []
    assert report.scenarios >= 1
    assert report.heads >= 2 * report.scenarios
    assert sum(report.faults.values()) >= report.scenarios
    assert set(report.faults) and all(f for f in report.faults)
    assert len(FAULTS) >= 8
