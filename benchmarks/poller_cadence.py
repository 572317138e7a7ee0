"""The poller's cadence over 1,000 Queues, with and without one broken repository, and the
lease proof with three replicas.

Each phase runs real ``Poller`` objects against real poll leases in PostgreSQL 15
(``--sqlite`` for SQLite). SourceControl is an in-process stand-in that answers
in ``--resolve-ms`` (what a ResolveHead over loopback gRPC costs), so what is
measured is the poller (scheduling, claims, backoff), not the git server; the
broken repository's ResolveHead hangs until the poller's timeout, the worst
case for a shared limit on calls in flight.

1. reference: 1,000 healthy Queues, ``every: --every`` seconds, for ``--seconds``;
2. broken: the same with Queue 0 hanging; the others should keep their cadence;
3. lease proof: three replicas over 100 Queues; ResolveHead calls per (Queue, tick).

Figures, in steady state (after every Queue's start-up poll): per healthy Queue,
the gap between consecutive polls (p50, p99) and the share of ticks polled; the
ratio broken / reference (1.0 = unaffected).

    .venv/bin/python benchmarks/poller_cadence.py [--queues 1000] [--every 5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from stovepipe.config import QueueConfig, config_from_mapping
from stovepipe.runtime.poller import Poller, PollerTuning
from stovepipe.storage import create_engine
from stovepipe.storage.migrate import upgrade
from stovepipe.storage.poll_leases import PollLeases

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.postgres import PostgresCluster  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def queues(count: int, every: float, prefix: str) -> list[QueueConfig]:
    config = config_from_mapping(
        {
            "queues": [
                {
                    "name": f"{prefix}/q{i}",
                    "source": {"repository": f"/srv/git/{prefix}-{i}.git"},
                    "build": {"targets": [{"name": "t", "command": "true"}]},
                    "poll": {"every": every},
                }
                for i in range(count)
            ]
        }
    )
    return list(config.queues)


class StandIn:
    """SourceControl answering in ``delay_s``; ``broken`` Queues hang past any timeout."""

    def __init__(self, delay_s: float, broken: set[str]) -> None:
        self.delay_s = delay_s
        self.broken = broken
        self.calls: dict[str, list[float]] = defaultdict(list)

    async def resolve(self, queue: QueueConfig, timeout_s: float) -> str:
        self.calls[queue.name].append(time.monotonic())
        if queue.name in self.broken:
            await asyncio.sleep(timeout_s)
            raise TimeoutError(f"{queue.source.repository}: no answer within {timeout_s:.0f}s")
        await asyncio.sleep(self.delay_s)
        return f"git+0000000000000000#main@{'a' * 40}"


async def ingest(queue: QueueConfig, head: str, trigger: str) -> None:
    return None  # the first poll of each Queue "ingests"; later ones see the same head


async def run_pollers(pollers: list[Poller], seconds: float) -> None:
    stop = asyncio.Event()
    started = asyncio.Event()

    async def on_start() -> None:
        started.set()

    tasks = [asyncio.create_task(p.run(stop, on_start)) for p in pollers]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)


def cadence(stand_in: StandIn, healthy: list[str], every: float, end: float) -> dict[str, float]:
    """Steady state: from the moment every healthy Queue had its start-up poll (acquiring
    a thousand leases takes a while on a disk that syncs each commit) to the end."""
    warm = max(stand_in.calls[name][0] for name in healthy if stand_in.calls.get(name))
    gaps: list[float] = []
    coverage: list[float] = []
    window = max(every, end - warm)
    for name in healthy:
        times = [t for t in stand_in.calls.get(name, []) if t >= warm]
        gaps.extend(b - a for a, b in itertools.pairwise(times))
        coverage.append(min(1.0, len(times) / max(1, math.floor(window / every))))
    return {
        "p50": pct(gaps, 0.5) if gaps else float("nan"),
        "p99": pct(gaps, 0.99) if gaps else float("nan"),
        "coverage": sum(coverage) / len(coverage),
    }


async def phase(
    url: str, count: int, every: float, seconds: float, resolve_ms: float, broken: bool, tag: str
) -> tuple[dict[str, float], StandIn]:
    engine = create_engine(url)
    try:
        qs = queues(count, every, tag)
        stand_in = StandIn(resolve_ms / 1000, {qs[0].name} if broken else set())
        poller = Poller(
            qs, PollLeases(engine), stand_in.resolve, ingest, holder=f"{tag}-1",
            tuning=PollerTuning(backoff_initial_s=every),
        )  # fmt: skip
        await run_pollers([poller], seconds)
        healthy = [q.name for q in qs[1:]]
        return cadence(stand_in, healthy, every, time.monotonic()), stand_in
    finally:
        await engine.dispose()


async def lease_proof(
    url: str, every: float, seconds: float
) -> tuple[Counter[tuple[str, int]], int]:
    engine = create_engine(url)
    try:
        qs = queues(100, every, "lease")
        stand_in = StandIn(0.005, set())
        replicas = [
            Poller(qs, PollLeases(engine), stand_in.resolve, ingest, holder=f"replica-{i}")
            for i in range(3)
        ]
        await run_pollers(replicas, seconds)
        per_tick = Counter(claim for r in replicas for claim in r.stats.claims)
        resolves = sum(len(v) for v in stand_in.calls.values())
        return per_tick, resolves
    finally:
        await engine.dispose()


async def main(
    count: int, every: float, seconds: float, resolve_ms: float, use_sqlite: bool
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-poll-bench-"))
    cluster = None
    if use_sqlite:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    else:
        cluster = PostgresCluster().start()
        url = cluster.create_database("bench")
    try:
        await asyncio.to_thread(upgrade, url)
        reference, _ = await phase(url, count, every, seconds, resolve_ms, False, "ref")
        with_broken, stand_in = await phase(url, count, every, seconds, resolve_ms, True, "broken")
        per_tick, resolves = await lease_proof(url, 1.0, min(seconds, 20.0))
    finally:
        if cluster is not None:
            cluster.destroy()
    broken_calls = len(stand_in.calls.get("broken/q0", []))
    print(f"storage            {'SQLite' if use_sqlite else 'PostgreSQL 15'}")
    print(
        f"queues             {count} x every {every:g}s for {seconds:g}s per phase; ResolveHead {resolve_ms:g} ms"
    )
    for label, figures in (("reference", reference), ("one broken repo", with_broken)):
        print(
            f"{label:<18} gap p50 {figures['p50']:.2f}s  p99 {figures['p99']:.2f}s  "
            f"ticks polled {figures['coverage'] * 100:.1f}%"
        )
    print(
        f"ratio              p99 gap broken / reference {with_broken['p99'] / reference['p99']:.2f}  "
        f"p50 {with_broken['p50'] / reference['p50']:.2f}  "
        f"(1.00 = the others keep their cadence)"
    )
    print(
        f"broken repository  {broken_calls} ResolveHead calls in {seconds:g}s (backoff) vs "
        f"{math.floor(seconds / every)} ticks"
    )
    print(
        f"three replicas     {len(per_tick)} (queue, tick) polled, {resolves} ResolveHead calls, "
        f"max per (queue, tick) {max(per_tick.values())}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--resolve-ms", type=float, default=5.0)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.every, args.seconds, args.resolve_ms, args.sqlite))
