"""Ping latency while many ``WatchEvents`` streams are open, against Ping with none.

Starts the API in this process on a real Tansu broker and a SQLite store, with
the real event feed, measures Ping p50/p99 with no stream open (the reference,
timed in the same run), opens ``--streams`` WatchEvents streams, measures Ping
again, and prints the ratio and the broker connections the API process holds
(one shared feed reader, however many streams). The machines are shared and
noisy: read the ratio, not the milliseconds.

    .venv/bin/python benchmarks/watch_streams.py [--streams 500] [--pings 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import config_from_mapping
from stovepipe.embedded import EmbeddedBroker
from stovepipe.messaging import HOOK, KafkaSettings, ensure_topics
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.stages import HeadIngester, Revalidator
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

QUEUE = "bench/main"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def pings(stub: Any, count: int) -> list[float]:
    took = []
    for _ in range(count):
        start = time.perf_counter()
        await stub.Ping(pb.PingRequest(), timeout=30)
        took.append((time.perf_counter() - start) * 1000)
    return took


def broker_connections(port: int) -> int:
    """Established TCP connections from this process to the broker's port."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        inodes = {
            line.split()[9]
            for line in lines
            if line.split()[3] == "01" and int(line.split()[2].rsplit(":", 1)[1], 16) == port
        }
        for fd in Path(f"/proc/{os.getpid()}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
    return count


async def main(streams: int, ping_count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="stovepipe-watch-bench-") as tmp:
        broker = EmbeddedBroker(log_path=Path(tmp) / "tansu.log")
        await broker.start()
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="w.")
            await ensure_topics(settings, [HOOK.name])
            store = Store(engine)
            config = config_from_mapping(
                {
                    "queues": [
                        {
                            "name": QUEUE,
                            "source": {"repository": "/nonexistent", "ref": "main"},
                            "build": {"targets": [{"name": "t", "command": "true"}]},
                        }
                    ]
                },
                source="bench",
            )
            feed = EventFeed(settings, store, max_subscribers=streams + 1, max_per_owner=streams)
            parts: Any = (store, config, None, None, None)
            api = StovepipeApi(
                store, config, HeadIngester(*parts), Revalidator(*parts), events=feed
            )
            server = await serve_api(api, "127.0.0.1:0")
            channel = grpc.aio.insecure_channel(server.address)
            stub = pb_grpc.StovepipeServiceStub(channel)
            await pings(stub, 20)  # warm up
            idle = await pings(stub, ping_count)
            watches = [
                stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE])) for _ in range(streams)
            ]
            deadline = time.monotonic() + 120
            while feed.subscriber_count < streams and time.monotonic() < deadline:  # noqa: ASYNC110 - a count to poll
                await asyncio.sleep(0.05)
            port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
            loaded = await pings(stub, ping_count)
            connections = broker_connections(port)
            for watch in watches:
                watch.cancel()
            deadline = time.monotonic() + 60
            while feed.subscriber_count and time.monotonic() < deadline:  # noqa: ASYNC110 - a count to poll
                await asyncio.sleep(0.05)
            after = feed.subscriber_count
            await channel.close(None)
            await server.stop(0)
            await feed.close()
        finally:
            await engine.dispose()
            await broker.stop()
    print(f"streams open: {streams} (feed subscribers reached before timing)")
    print(f"Ping with no stream:   p50 {pct(idle, 0.5):6.2f} ms  p99 {pct(idle, 0.99):6.2f} ms")
    print(
        f"Ping with {streams} streams: p50 {pct(loaded, 0.5):6.2f} ms  p99 {pct(loaded, 0.99):6.2f} ms"
    )
    print(
        f"ratio loaded/idle: p50 {pct(loaded, 0.5) / pct(idle, 0.5):.2f}x, "
        f"p99 {pct(loaded, 0.99) / pct(idle, 0.99):.2f}x"
    )
    print(f"broker connections held by the API process with {streams} streams: {connections}")
    print(f"subscribers left after every stream was cancelled: {after}")
    print(f"RESULT ping_p50_with_streams_vs_without {pct(loaded, 0.5) / pct(idle, 0.5):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--pings", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.pings))
