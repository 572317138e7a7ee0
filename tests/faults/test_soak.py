"""The randomized soak at CI size: a few scenarios of combined faults, zero violations.

It runs with projects configured (Phase 2: every Queue has the ``calc`` and ``docs``
projects, half of them without inheritance), so the per-project invariants are
soaked too: no falsely green project fact, project bookmarks monotonic, every
Request terminal with every project's fact. Queues without projects are covered
by the rest of the fault suite.

``STOVEPIPE_SOAK_SEED`` replays another seed; ``make soak`` runs the larger size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.fault_stack import fault_stack
from harness.postgres import PostgresCluster
from harness.soak import FAULTS, PROCESS_FAULTS, run_soak

CI_SEED = 20261122
CI_SCENARIOS = 4


@pytest.mark.timeout(900)  # up to max_seconds of scenarios, then the last one's settling
async def test_soak_small(
    tmp_path: Path,
    fault_postgres: PostgresCluster,
    fault_template: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = int(os.environ.get("STOVEPIPE_SOAK_SEED", CI_SEED))
    async with fault_stack(
        tmp_path, fault_postgres, template=fault_template, projects=True
    ) as stack:
        report = await run_soak(
            stack, seed=seed, scenarios=CI_SCENARIOS, max_seconds=400, progress=print
        )
        with capsys.disabled():
            print("\n[stovepipe soak] " + "\n[stovepipe soak] ".join(report.lines()))
        assert report.violations == []
        assert report.project_facts > 0  # the projects were really analyzed
        assert report.scenarios >= 1
        assert report.heads >= report.scenarios  # quick pushes to one Queue may be one head
        assert set(report.kinds) <= set(FAULTS)
        assert sum(report.kinds.values()) == sum(report.faults.values()) >= report.scenarios
        # the scenarios combined different faults, not one fault over and over
        assert len(report.kinds) >= min(2, sum(report.kinds.values()))
        # the faults the report claims hit the processes: the stack counted each of them,
        # and what was killed was brought back by the keeper
        by_process = sum(n for kind, n in report.kinds.items() if kind in PROCESS_FAULTS)
        assert sum(stack.faults.values()) == by_process
        if {"kill_worker", "kill_worker_in_handler", "kill_hooks_mid_delivery", "kill_api"} & set(
            report.kinds
        ):
            assert report.worker_restarts >= 1
