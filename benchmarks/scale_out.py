"""Throughput with one and with three replicas of every stage, in the same run.

Each size runs the product as a process tree (every stage as separate worker
processes, the API, Tansu, PostgreSQL 15) on topics of 6 partitions, with the
in-memory extensions of ``harness.noop_extensions`` so that what is timed is
the pipeline and not git or a build. A burst of heads (600 over 60 Queues by
default, pushed as fast as the API ingests them) is timed from the first push
until every head is terminal with its verdict recorded; the figure is heads
settled per second, and the ratio of three replicas to one.

Heads pushed faster than a Queue builds are superseded (coalesced into the
Queue's newest head) rather than built, and two heads pushed to one Queue
before either is ingested are one Request (ingest reads the branch's head, as a
poller would): that is the product's behaviour, so the report counts the
distinct Requests by their end state and gives builds per second beside heads
per second (a size that coalesced
more settles more heads per build). On a 2-core machine expect little speed-up
from replicas, even a slow-down: the processes compete for the same cores, and
three replicas are three times the processes polling and heart-beating. So
each size also reports the CPU seconds its Stovepipe processes (API and
workers, from /proc) spent per head, which a machine shared with other work
disturbs far less than wall time, and how long the push itself took (the API's
ingest is part of what is timed). The stack's start is not timed. Progress is printed every ``--progress-every``
seconds; a size that does not settle within ``--settle-timeout`` fails the run.

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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from proc_cpu import cpu_seconds  # noqa: E402

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
class Size:
    heads: int
    queues: int
    settle_timeout_s: float
    progress_s: float


@dataclass(frozen=True)
class Figure:
    replicas: int
    heads: int
    seconds: float
    built: int
    states: dict[str, int]
    """Distinct Requests by end state."""
    pushed_s: float
    """From the first push until the last head was ingested."""
    cpu_s: float
    """CPU seconds of the API and every worker over the timed window."""

    @property
    def per_second(self) -> float:
        return self.heads / self.seconds

    @property
    def builds_per_second(self) -> float:
        return self.built / self.seconds

    @property
    def cpu_ms_per_head(self) -> float:
        return self.cpu_s * 1000 / self.heads

    def line(self) -> str:
        return (
            f"{self.replicas} replica(s) per stage: {self.heads} heads settled in "
            f"{self.seconds:.1f}s = {self.per_second:.1f} heads/s, "
            f"{self.builds_per_second:.1f} builds/s "
            f"({sum(self.states.values())} Requests: "
            f"{', '.join(f'{n} {state}' for state, n in sorted(self.states.items()))}; "
            f"{self.built} built); pushed in "
            f"{self.pushed_s:.1f}s, {self.cpu_ms_per_head:.0f} ms CPU per head"
        )


async def _burst(stack: FaultStack, heads: int, ids: list[str]) -> None:
    """Push ``heads`` heads round-robin over the Queues, a few ingests at a time; each
    Request id lands in ``ids`` in push order."""
    rng = random.Random(SEED)
    verdicts = [rng.random() < 0.7 for _ in range(heads)]
    slots = asyncio.Semaphore(CONCURRENT_INGESTS)
    queues = stack.queue_names
    ids.extend([""] * heads)

    async def one(index: int) -> None:
        async with slots:
            queue = queues[index % len(queues)]
            ids[index] = await stack.push_and_ingest(queue, verdicts[index], timeout_s=300)

    await asyncio.gather(*(one(i) for i in range(heads)))


async def _progress(
    label: str, watch: InvariantWatch, ids: list[str], started: float, every_s: float
) -> None:
    """Every ``every_s``: how many heads are pushed and how many settled, so a slow run
    on a loaded machine is seen moving (or seen stuck)."""
    while True:
        await asyncio.sleep(every_s)
        at = time.monotonic() - started  # the counting below takes a while on a loaded machine
        pushed = [i for i in ids if i]
        waiting = len(await watch.unsettled(pushed))
        print(
            f"  [{label} +{at:.0f}s] pushed {len(pushed)}/{len(ids)}, "
            f"settled {len(pushed) - waiting}, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


async def measure(
    root: Path,
    postgres: PostgresCluster,
    template: str,
    replicas: int,
    size: Size,
) -> Figure:
    heads, queues = size.heads, size.queues
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
        label = f"{replicas} replica(s)"
        began = time.monotonic()
        await stack.until_ready(timeout_s=600)
        print(
            f"  [{label}] {len(stack.workers)} workers ready in {time.monotonic() - began:.0f}s",
            flush=True,
        )
        assert stack.store is not None
        watch = InvariantWatch(stack.store, {q: stack.repos[q] for q in stack.queue_names})
        ids: list[str] = []
        started = time.monotonic()
        pids = [c.process.pid for c in stack.children.values() if c.process is not None]
        cpu_before = sum(map(cpu_seconds, pids))
        progress = asyncio.create_task(_progress(label, watch, ids, started, size.progress_s))
        try:
            await _burst(stack, heads, ids)
            pushed_s = time.monotonic() - started

            async def settled() -> bool:
                return not await watch.unsettled(ids, first_only=True)

            await stack.wait_until(settled, size.settle_timeout_s, f"{heads} heads settled")
            seconds = time.monotonic() - started
            cpu_s = sum(map(cpu_seconds, pids)) - cpu_before
        finally:
            progress.cancel()
        problems = await watch.liveness_problems(ids)
        if problems:
            raise RuntimeError(f"settled with the books not balanced: {problems[:5]}")
        await assert_true_verdicts(stack, watch, ids)  # a fast run that was wrong is no figure
        states: Counter[str] = Counter()
        for request_id in set(ids):
            request = await stack.store.get_request(request_id)
            states[request.state.value if request is not None else "missing"] += 1
        built = len(ext.build_runner.builds)
        return Figure(replicas, heads, seconds, built, dict(states), pushed_s, cpu_s)


async def main(size: Size, sizes: list[int]) -> int:
    load = os.getloadavg()[0]
    print(
        f"{size.heads} heads over {size.queues} Queues, {PARTITIONS} partitions, replicas "
        f"{sizes}; load average before: {load:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    figures = []
    with (
        tempfile.TemporaryDirectory(prefix="stovepipe-scale-") as tmp,
        PostgresCluster() as postgres,
    ):
        template = (await MigratedTemplate(postgres.url).prepare()).name
        for replicas in sizes:
            figure = await measure(Path(tmp) / f"r{replicas}", postgres, template, replicas, size)
            print(figure.line(), flush=True)
            figures.append(figure)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    reference = figures[0]
    for figure in figures:
        print(f"RESULT scale_out_heads_per_s_{figure.replicas}_replicas {figure.per_second:.2f}")
        print(
            f"RESULT scale_out_cpu_ms_per_head_{figure.replicas}_replicas {figure.cpu_ms_per_head:.0f}"
        )
    for figure in figures[1:]:
        heads = figure.per_second / reference.per_second
        built = figure.builds_per_second / reference.builds_per_second
        cpu = figure.cpu_ms_per_head / reference.cpu_ms_per_head
        print(
            f"{figure.replicas} vs {reference.replicas} replica(s) per stage: "
            f"{heads:.2f}x the heads settled per second, {built:.2f}x the builds per second, "
            f"{cpu:.2f}x the CPU per head"
        )
        pair = f"{figure.replicas}_vs_{reference.replicas}_replicas"
        print(f"RESULT scale_out_heads_per_s_{pair} {heads:.2f}")
        print(f"RESULT scale_out_builds_per_s_{pair} {built:.2f}")
        print(f"RESULT scale_out_cpu_per_head_{pair} {cpu:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=600, help="heads pushed per size")
    parser.add_argument("--queues", type=int, default=60, help="Queues they are spread over")
    parser.add_argument(
        "--replicas", default="1,3", help="sizes to time, the first is the reference"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=1200.0, help="seconds a size may take to settle"
    )
    parser.add_argument("--progress-every", type=float, default=15.0, help="seconds")
    args = parser.parse_args()
    try:
        sizes = [int(n) for n in args.replicas.split(",")]
    except ValueError:
        parser.error(f"--replicas wants numbers separated by commas, got {args.replicas!r}")
    if args.heads < 1 or args.queues < 1 or any(n < 1 or n > PARTITIONS for n in sizes):
        parser.error(f"--heads and --queues >= 1; replicas between 1 and {PARTITIONS}")
    size = Size(args.heads, args.queues, args.settle_timeout, args.progress_every)
    sys.exit(asyncio.run(main(size, sizes)))
