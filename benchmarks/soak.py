"""The randomized fault soak at a chosen size; prints scenarios, faults and violations.

Runs the product as a process tree on a real Tansu broker and a crash-safe
PostgreSQL 15 cluster of its own, and combines faults at random (see
``harness.soak``). Exits 1 when any invariant was violated.

    .venv/bin/python benchmarks/soak.py [--seed 7] [--scenarios 40] [--minutes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.fault_stack import fault_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402
from harness.soak import run_soak  # noqa: E402


async def main(seed: int, scenarios: int, minutes: float, queues: int) -> int:
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="stovepipe-soak-") as tmp,
        PostgresCluster(crash_safe=True) as postgres,
    ):
        async with fault_stack(Path(tmp), postgres, queues=queues) as stack:
            progress(f"stack up: {len(stack.children)} processes, broker, PostgreSQL")
            report = await run_soak(
                stack, seed=seed, scenarios=scenarios, max_seconds=minutes * 60, progress=progress
            )
    print()
    for line in report.lines():
        print(line)
    return 1 if report.violations else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--scenarios", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--queues", type=int, default=2)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seed, args.scenarios, args.minutes, args.queues)))
