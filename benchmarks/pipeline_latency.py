"""Ingest → fact latency of one head against its physical floor, and throughput.

Runs the whole pipeline in one process (real Tansu broker, real PostgreSQL
unless --sqlite, real git and local-runner extensions over gRPC) with an
instant build target (``true``), and reports p50/p99 of "Ingest called → its
verdict event received" for heads driven one after another on each Queue. The
verdicts are awaited on one ``WatchEvents`` stream, as a downstream team would
(polling ``GetGreenness`` every few milliseconds ran on the pipeline's own event
loop and was a large share of its CPU); the event is one hop after the fact is
written, so the floor counts that hop too.

In the same run it times the floor's primitives: one produce → consume hop
on the same broker, one single-row write transaction on the same database, one
``git worktree add`` (+ remove) of the sample repository and one spawn of
``true``. The floor of a head is ``hops x hop + writes x write + worktree +
spawn`` and the goal of issue 14 is ``p50 <= 2 x floor``.

Throughput: ``--queues N --heads 1`` ingests one head on each of N Queues at
once; heads/s and CPU seconds per head (this process and its children: the
extensions run in it, git and the build run as its children) are printed.

    .venv/bin/python benchmarks/pipeline_latency.py [--queues 1] [--heads 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from stovepipe.embedded import EmbeddedBroker
from stovepipe.storage.engine import create_engine
from stovepipe.storage.migrate import upgrade_async

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from verdict_watch import VerdictWatch  # noqa: E402

from harness.git_repos import WorkRepo  # noqa: E402
from harness.live import QUEUE, Live, live_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402

PIPELINE_HOPS = 5  # ingest→process→build→buildsignal→record, then record→the event feed
FLOOR_WRITES = 4  # Request created, slot taken with the build, fact written, bookmark moved


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def new_head(repo: WorkRepo, branch: str, n: int) -> None:
    """A new (empty) commit on ``branch`` without touching the working tree, so queues
    on different branches can move concurrently."""
    tip = repo.git("rev-parse", f"refs/heads/{branch}")
    tree = repo.git("rev-parse", f"{tip}^{{tree}}")
    sha = repo.git("commit-tree", tree, "-p", tip, "-m", f"{branch} head {n}")
    repo.git("update-ref", f"refs/heads/{branch}", sha, tip)


async def drive_queue(
    live: Live, verdicts: VerdictWatch, queue: str, branch: str, heads: int, out: list[float]
) -> None:
    for n in range(heads):
        new_head(live.repo, branch, n)
        start = time.perf_counter()
        ingest = await live.ingest(queue)
        await verdicts.recorded(live.stub, queue, ingest.uri)
        out.append(time.perf_counter() - start)


async def raw_hop(bootstrap: str, samples: int) -> list[float]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    latencies = []
    try:
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getone()
        for _ in range(samples):
            start = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            await consumer.getone()
            await consumer.commit()
            latencies.append(time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()
    return latencies


async def db_write(database_url: str, samples: int) -> list[float]:
    """One single-row write transaction, as the floor's unit of database work."""
    engine = create_engine(database_url)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    latencies = []
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (k INTEGER PRIMARY KEY, v TEXT)"))
        for n in range(samples):
            start = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(text(f"INSERT INTO {table} VALUES (:k, 'x')"), {"k": n})
            latencies.append(time.perf_counter() - start)
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
    finally:
        await engine.dispose()
    return latencies


def worktree_and_spawn(source: Path, repo: Path, samples: int) -> tuple[list[float], list[float]]:
    """One ``git worktree add --detach`` + remove, and one spawn of ``true``, timed in a
    clone of ``source`` at ``repo``."""
    subprocess.run(["git", "clone", "--quiet", str(source), str(repo)], check=True)
    worktrees, spawns = [], []
    for n in range(samples):
        path = repo.parent / f"bench-wt-{n}"
        start = time.perf_counter()
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(path), "HEAD"],
            cwd=repo,
            check=True,
        )
        worktrees.append(time.perf_counter() - start)
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, check=True)
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        spawns.append(time.perf_counter() - start)
    return worktrees, spawns


def cpu_now() -> float:
    """CPU seconds of this process and of its waited-for children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def drive_queues(live: Live, queues: int, heads: int) -> tuple[list[float], float, float]:
    """``heads`` sequential heads on each of ``queues`` Queues (after one warm-up head):
    their latencies, the wall time and the CPU seconds (this process and children)."""
    live.repo.commit({"README.md": "bench\n"}, "root")
    for i in range(1, queues):
        live.repo.git("branch", f"q{i}")
    names = [
        (QUEUE if i == 0 else f"{QUEUE}-{i}", "main" if i == 0 else f"q{i}") for i in range(queues)
    ]
    verdicts = VerdictWatch(live.stub)
    await verdicts.open()
    try:
        warm: list[float] = []
        await drive_queue(live, verdicts, names[0][0], names[0][1], 1, warm)
        latencies: list[float] = []
        cpu0, began = cpu_now(), time.perf_counter()
        await asyncio.gather(
            *(drive_queue(live, verdicts, q, b, heads, latencies) for q, b in names)
        )
        return latencies, time.perf_counter() - began, cpu_now() - cpu0
    finally:
        verdicts.close()


async def main(queues: int, heads: int, use_sqlite: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-bench-"))
    cluster = None
    if use_sqlite:
        database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    else:
        cluster = PostgresCluster().start()
        database_url = cluster.create_database("bench")
    broker = EmbeddedBroker()
    await broker.start()
    try:
        await upgrade_async(database_url)
        targets = [{"name": "instant", "command": "true", "timeout_seconds": 60}]
        async with live_stack(
            tmp, broker.bootstrap_servers, database_url, queues=queues, targets=targets
        ) as live:
            latencies, wall, cpu = await drive_queues(live, queues, heads)
        # a copy of the repository, so the floor's worktrees never meet the pipeline's
        copy = tmp / "floor-repo"
        worktree, spawn = await asyncio.to_thread(worktree_and_spawn, live.repo.path, copy, 20)
        hop = await raw_hop(broker.bootstrap_servers, 200)
        write = await db_write(database_url, 200)
    finally:
        await broker.stop()
        if cluster is not None:
            cluster.destroy()
    p50, p99 = pct(latencies, 0.50), pct(latencies, 0.99)
    h50, h99 = pct(hop, 0.50), pct(hop, 0.99)
    print(
        f"storage            {'SQLite' if use_sqlite else 'PostgreSQL 15'}; broker Tansu (memory)"
    )
    print(
        f"heads              {len(latencies)} over {queues} queues ({heads} sequential heads each), wall {wall:.1f}s"
    )
    print(
        f"ingest→verdict     p50 {p50 * 1000:.0f} ms   p99 {p99 * 1000:.0f} ms   mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    print(
        f"raw hop            p50 {h50 * 1000:.1f} ms   p99 {h99 * 1000:.1f} ms   ({len(hop)} samples)"
    )
    w50, t50, s50 = pct(write, 0.5), pct(worktree, 0.5), pct(spawn, 0.5)
    floor = PIPELINE_HOPS * h50 + FLOOR_WRITES * w50 + t50 + s50
    print(
        f"floor primitives   write txn p50 {w50 * 1000:.1f} ms   worktree add {t50 * 1000:.1f} ms   "
        f"spawn {s50 * 1000:.1f} ms"
    )
    print(
        f"floor              {floor * 1000:.0f} ms  ({PIPELINE_HOPS} hops + {FLOOR_WRITES} writes "
        "+ worktree + spawn)"
    )
    print(
        f"throughput         {len(latencies) / wall:.1f} heads/s, "
        f"{cpu / len(latencies) * 1000:.0f} ms CPU per head (one process + children)"
    )
    print(f"RESULT one_head_p50_vs_floor {p50 / floor:.2f} goal<=2")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--heads", type=int, default=20, help="sequential heads per queue")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.heads, args.sqlite))
