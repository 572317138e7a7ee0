"""What tracing + metrics cost the pipeline: ingest → fact p50/p99 without, then with.

Same run, same broker and database, the same workload twice: first with no
tracer provider and no metrics server, then with tracing on (every span
exported over OTLP/gRPC, sampling 100%, to a receiver in another process, as a
collector would be) and ``/metrics`` served and scraped every second. Prints
both, and the ratio with/without. The counters and histograms themselves are
always on (they are plain code), so their cost is in both figures.

    .venv/bin/python benchmarks/telemetry_overhead.py [--queues 5] [--heads 6] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_latency import drive_queue, pct

from stovepipe.config.sections import TelemetryConfig
from stovepipe.embedded import EmbeddedBroker
from stovepipe.runtime.embedded import free_port
from stovepipe.runtime.sample_repo import Step
from stovepipe.telemetry.metrics import serve_metrics
from stovepipe.telemetry.tracing import start_tracing
from stovepipe.testing.live import QUEUE, live_stack
from stovepipe.testing.postgres import PostgresCluster


def _receiver(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # type: ignore[no-untyped-def]
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


async def run_phase(
    tmp: Path, bootstrap: str, database_url: str, queues: int, heads: int
) -> list[float]:
    targets = [{"name": "instant", "command": "true", "timeout_seconds": 60}]
    async with live_stack(tmp, bootstrap, database_url, queues=queues, targets=targets) as live:
        live.repo.commit(Step("root", {"README.md": "bench\n"}, True))
        for i in range(1, queues):
            live.repo.git("branch", f"q{i}")
        names = [
            (QUEUE if i == 0 else f"{QUEUE}-{i}", "main" if i == 0 else f"q{i}")
            for i in range(queues)
        ]
        warm: list[float] = []
        await drive_queue(live, names[0][0], names[0][1], 1, warm)
        latencies: list[float] = []
        await asyncio.gather(*(drive_queue(live, q, b, heads, latencies) for q, b in names))
    return latencies


def scrape_every_second(address: str, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            response.read()
        counts[0] += 1


async def main(queues: int, heads: int, use_sqlite: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="stovepipe-bench-telemetry-"))
    cluster = None
    if use_sqlite:
        urls = [f"sqlite+aiosqlite:///{root / f'bench{i}.db'}" for i in range(2)]
    else:
        cluster = PostgresCluster().start()
        urls = [cluster.create_database(f"bench{i}") for i in range(2)]
    broker = EmbeddedBroker()
    await broker.start()
    port = free_port()
    ready = multiprocessing.get_context("spawn").Event()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receiver, args=(port, ready), daemon=True
    )
    receiver.start()
    try:
        (root / "off").mkdir()
        (root / "on").mkdir()
        off = await run_phase(root / "off", broker.bootstrap_servers, urls[0], queues, heads)
        ready.wait(30)
        tracing = start_tracing(
            TelemetryConfig(otlp_endpoint=f"127.0.0.1:{port}", otlp_insecure=True), "bench"
        )
        metrics = serve_metrics("127.0.0.1", 0)
        stop, scrapes = threading.Event(), [0]
        scraper = threading.Thread(
            target=scrape_every_second, args=(metrics.address, stop, scrapes), daemon=True
        )
        scraper.start()
        began = time.perf_counter()
        on = await run_phase(root / "on", broker.bootstrap_servers, urls[1], queues, heads)
        seconds = time.perf_counter() - began
        stop.set()
        scraper.join()
        metrics.close()
        assert tracing is not None
        spans_started = time.perf_counter()
        await asyncio.to_thread(tracing.shutdown)
        flush_s = time.perf_counter() - spans_started
    finally:
        await broker.stop()
        receiver.terminate()
        if cluster is not None:
            cluster.destroy()
    print(
        f"storage            {'SQLite' if use_sqlite else 'PostgreSQL 15'}; broker Tansu (memory)"
    )
    print(f"heads per phase    {len(off)} / {len(on)} over {queues} queues ({heads} each)")
    print(
        f"telemetry off      p50 {pct(off, 0.5) * 1000:.0f} ms   p99 {pct(off, 0.99) * 1000:.0f} ms"
    )
    print(
        f"telemetry on       p50 {pct(on, 0.5) * 1000:.0f} ms   p99 {pct(on, 0.99) * 1000:.0f} ms"
        f"   ({scrapes[0]} scrapes in {seconds:.0f}s, final flush {flush_s:.2f}s)"
    )
    print(
        f"ratio on/off       p50 {pct(on, 0.5) / pct(off, 0.5):.2f}   p99 {pct(on, 0.99) / pct(off, 0.99):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=5)
    parser.add_argument("--heads", type=int, default=6, help="sequential heads per queue")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.heads, args.sqlite))
