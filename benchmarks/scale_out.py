"""Throughput with one and with three replicas of every stage, in the same run.

Each size runs the product as a process tree (every stage as separate worker
processes, the API, Tansu, PostgreSQL 15) on topics of 6 partitions, with the
in-memory extensions of ``harness.noop_extensions`` so that what is timed is
the pipeline and not git or a build. A burst of heads (600 over 60 Queues by
default, pushed as fast as the API ingests them) is timed from the first push
until every head is terminal with its verdict recorded; the figure is heads
settled per second, and the ratio of three replicas to one.

Heads pushed faster than a Queue builds are superseded (coalesced into the
Queue's newest head) rather than built: that is the product's behaviour, and
the report says how many heads were built. On a 2-core machine expect little
speed-up from replicas: the processes compete for the same cores. The stack's
start is not timed.

    .venv/bin/python benchmarks/scale_out.py [--heads 600] [--queues 60] [--replicas 1,3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.fault_checks import InvariantWatch, assert_true_verdicts  # noqa: E402
from harness.fault_stack import FaultStack, fault_stack  # noqa: E402
from harness.noop_extensions import noop_extensions  # noqa: E402
from harness.postgres import MigratedTemplate, PostgresCluster  # noqa: E402

PARTITIONS = 6
CONCURRENT_INGESTS = 16
SEED = 20261130
STALE_AFTER_S = 300.0
"""Production's sweeper window: a burst queued behind itself is not stale."""


@dataclass(frozen=True)
class Figure:
    replicas: int
    heads: int
    seconds: float
    built: int
    superseded: int

    @property
    def per_second(self) -> float:
        return self.heads / self.seconds

    def line(self) -> str:
        return (
            f"{self.replicas} replica(s) per stage: {self.heads} heads settled in "
            f"{self.seconds:.1f}s = {self.per_second:.1f} heads/s "
            f"({self.built} built, {self.superseded} superseded)"
        )


async def _burst(stack: FaultStack, heads: int) -> list[str]:
    rng = random.Random(SEED)
    slots = asyncio.Semaphore(CONCURRENT_INGESTS)
    queues = stack.queue_names

    async def one(index: int) -> str:
        async with slots:
            return await stack.push_and_ingest(queues[index % len(queues)], rng.random() < 0.7)

    return list(await asyncio.gather(*(one(i) for i in range(heads))))


async def measure(
    root: Path, postgres: PostgresCluster, template: str, replicas: int, heads: int, queues: int
) -> Figure:
    async with (
        noop_extensions() as ext,
        fault_stack(
            root,
            postgres,
            template=template,
            queues=queues,
            replicas=replicas,
            partitions=PARTITIONS,
            noop=ext,
            sweeper_stale_after_s=STALE_AFTER_S,
        ) as stack,
    ):
        await stack.until_ready(timeout_s=300)
        assert stack.store is not None
        watch = InvariantWatch(stack.store, {q: stack.repos[q] for q in stack.queue_names})
        started = time.monotonic()
        ids = await _burst(stack, heads)

        async def settled() -> bool:
            return not await watch.unsettled(ids, first_only=True)

        await stack.wait_until(settled, 600, f"{heads} heads settled")
        seconds = time.monotonic() - started
        assert not await watch.liveness_problems(ids)
        await assert_true_verdicts(stack, watch, ids)  # a fast run that was wrong is no figure
        superseded = 0
        for request_id in ids:
            request = await stack.store.get_request(request_id)
            superseded += request is not None and request.state.value == "superseded"
        return Figure(replicas, heads, seconds, len(ext.build_runner.builds), superseded)


async def main(heads: int, queues: int, sizes: list[int]) -> int:
    load = os.getloadavg()[0]
    print(f"load average before: {load:.2f} on {os.cpu_count()} CPUs", flush=True)
    figures = []
    with (
        tempfile.TemporaryDirectory(prefix="stovepipe-scale-") as tmp,
        PostgresCluster() as postgres,
    ):
        template = (await MigratedTemplate(postgres.url).prepare()).name
        for replicas in sizes:
            figure = await measure(
                Path(tmp) / f"r{replicas}", postgres, template, replicas, heads, queues
            )
            print(figure.line(), flush=True)
            figures.append(figure)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    reference = figures[0]
    for figure in figures[1:]:
        print(
            f"{figure.replicas} vs {reference.replicas} replica(s) per stage: "
            f"{figure.per_second / reference.per_second:.2f}x the throughput"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=600)
    parser.add_argument("--queues", type=int, default=60)
    parser.add_argument(
        "--replicas", default="1,3", help="sizes to time, the first is the reference"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.replicas.split(",")]
    sys.exit(asyncio.run(main(args.heads, args.queues, sizes)))
