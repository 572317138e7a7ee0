"""The randomized soak at CI size: a few scenarios of combined faults, zero violations.

``STOVEPIPE_SOAK_SEED`` replays another seed; ``make soak`` runs the larger size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stovepipe.testing.fault_stack import fault_stack
from stovepipe.testing.postgres import PostgresCluster
from stovepipe.testing.soak import run_soak

CI_SEED = 20261122
CI_SCENARIOS = 4


async def test_soak_small(
    tmp_path: Path, fault_postgres: PostgresCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("STOVEPIPE_SOAK_SEED", CI_SEED))
    async with fault_stack(tmp_path, fault_postgres) as stack:
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
    # the scenarios combined different faults, not one fault over and over
    assert len(report.faults) >= min(2, sum(report.faults.values()))
