"""Ingest → fact latency across many Queues, against the raw cost of one Kafka hop.

Runs the whole pipeline in one process (real Tansu broker, real PostgreSQL
unless --sqlite, real git and local-runner extensions over gRPC) with an
instant build target, reports p50/p99 of "Ingest returned → fact readable",
then measures produce → consume latency of a single hop on the same broker
and prints the overhead ratio ``pipeline p50 / (hops x raw hop p50)``.

    .venv/bin/python benchmarks/pipeline_latency.py [--queues 20] [--heads 10] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stovepipe.embedded import EmbeddedBroker
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.git_repos import WorkRepo  # noqa: E402
from harness.live import QUEUE, Live, live_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402

PIPELINE_HOPS = 4  # ingest→process→build→buildsignal→record; delay-tier polls come on top


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


async def drive_queue(live: Live, queue: str, branch: str, heads: int, out: list[float]) -> None:
    for n in range(heads):
        new_head(live.repo, branch, n)
        start = time.perf_counter()
        ingest = await live.ingest(queue)
        while True:
            greenness = await live.stub.GetGreenness(
                pb.GetGreennessRequest(queue=queue, uri=ingest.uri)
            )
            if greenness.status == pb.GREENNESS_STATUS_RECORDED:
                break
            await asyncio.sleep(0.005)
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
            live.repo.commit({"README.md": "bench\n"}, "root")
            for i in range(1, queues):
                live.repo.git("branch", f"q{i}")
            names = [
                (QUEUE if i == 0 else f"{QUEUE}-{i}", "main" if i == 0 else f"q{i}")
                for i in range(queues)
            ]
            warm: list[float] = []
            await drive_queue(live, names[0][0], names[0][1], 1, warm)
            latencies: list[float] = []
            began = time.perf_counter()
            await asyncio.gather(*(drive_queue(live, q, b, heads, latencies) for q, b in names))
            wall = time.perf_counter() - began
        hop = await raw_hop(broker.bootstrap_servers, 200)
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
        f"ingest→fact        p50 {p50 * 1000:.0f} ms   p99 {p99 * 1000:.0f} ms   mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    print(
        f"raw hop            p50 {h50 * 1000:.1f} ms   p99 {h99 * 1000:.1f} ms   ({len(hop)} samples)"
    )
    print(
        f"overhead ratio     {p50 / (PIPELINE_HOPS * h50):.1f}  (pipeline p50 / ({PIPELINE_HOPS} hops x raw hop p50))"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--heads", type=int, default=10, help="sequential heads per queue")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.heads, args.sqlite))
