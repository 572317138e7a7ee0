"""What tracing + metrics cost the pipeline: ingest → fact p50/p99 without, then with.

Same run, same broker and database server: the same workload in alternating
phases (off, on, on, off, ...), each in a fresh process: "off" with no tracer
provider and no metrics server, "on" with tracing (every span exported over
OTLP/gRPC, sampling 100%, to a receiver in another process, as a collector
would be) and ``/metrics`` served and scraped every second. Alternating keeps a
machine whose load drifts from favouring either. Prints both and the ratio.
The counters and histograms themselves are always on (they are plain code), so
their cost is in both figures.

    .venv/bin/python benchmarks/telemetry_overhead.py [--queues 1] [--heads 8] [--rounds 3] [--sqlite]

Bounded: each phase is one child process given ``--phase-timeout`` seconds
(default 240); a phase that overruns is reported and the run stops with what it
has, rather than hanging a loaded machine. Progress goes to stderr, one line
per phase with its p50, so a slow run is visibly moving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_latency import (
    drive_queues,
    pct,
)  # puts tests/ (the shared harness) on the path

from harness.live import live_stack
from harness.postgres import PostgresCluster
from stovepipe.config.sections import TelemetryConfig
from stovepipe.embedded import EmbeddedBroker
from stovepipe.runtime.processes import free_port
from stovepipe.storage.migrate import upgrade_async
from stovepipe.telemetry.metrics import serve_metrics
from stovepipe.telemetry.tracing import start_tracing


def _receiver(port: int, ready: multiprocessing.synchronize.Event) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # type: ignore[no-untyped-def]
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


async def run_phase(
    tmp: Path, bootstrap: str, database_url: str, queues: int, heads: int
) -> list[float]:
    """Ingest → verdict event latencies of ``heads`` sequential heads on each of ``queues`` Queues."""
    targets = [{"name": "instant", "command": "true", "timeout_seconds": 60}]
    async with live_stack(tmp, bootstrap, database_url, queues=queues, targets=targets) as live:
        latencies, _, _ = await drive_queues(live, queues, heads)
    return latencies


class _Overrun(Exception):
    """A phase took longer than ``--phase-timeout``."""


def scrape_every_second(address: str, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            response.read()
        counts[0] += 1


async def child(
    phase: str, bootstrap: str, database_url: str, otlp: str, args: argparse.Namespace
) -> None:
    """One phase in this process; prints its latencies as JSON on the last line."""
    tmp = Path(tempfile.mkdtemp(prefix=f"stovepipe-bench-{phase}-"))
    tracing, metrics, stop, scraper = None, None, threading.Event(), None
    scrapes = [0]
    if phase == "on":
        tracing = start_tracing(TelemetryConfig(otlp_endpoint=otlp, otlp_insecure=True), "bench")
        metrics = serve_metrics("127.0.0.1", 0)
        scraper = threading.Thread(
            target=scrape_every_second, args=(metrics.address, stop, scrapes), daemon=True
        )
        scraper.start()
    latencies = await run_phase(tmp, bootstrap, database_url, args.queues, args.heads)
    stop.set()
    if scraper is not None:
        scraper.join()
    if metrics is not None:
        metrics.close()
    if tracing is not None:
        await asyncio.to_thread(tracing.shutdown)
    print(json.dumps({"latencies": latencies, "scrapes": scrapes[0]}))


def run_child(
    phase: str, bootstrap: str, url: str, otlp: str, args: argparse.Namespace
) -> list[float]:
    done = subprocess.run(
        [
            sys.executable, __file__, "--phase", phase, "--bootstrap", bootstrap,
            "--database-url", url, "--otlp", otlp,
            "--queues", str(args.queues), "--heads", str(args.heads),
        ],
        capture_output=True, text=True, check=True, timeout=args.phase_timeout,
    )  # fmt: skip
    latencies: list[float] = json.loads(done.stdout.strip().splitlines()[-1])["latencies"]
    return latencies


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="stovepipe-bench-telemetry-"))
    cluster = None
    if not args.sqlite:
        cluster = PostgresCluster().start()
    broker = EmbeddedBroker()
    await broker.start()
    port = free_port()
    ready = multiprocessing.get_context("spawn").Event()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receiver, args=(port, ready), daemon=True
    )
    receiver.start()
    ready.wait(30)
    results: dict[str, list[float]] = {"off": [], "on": []}
    started = time.monotonic()
    try:
        for n in range(args.rounds):
            for phase in ("off", "on") if n % 2 == 0 else ("on", "off"):
                name = f"bench_{phase}_{n}"
                url = (
                    f"sqlite+aiosqlite:///{root / (name + '.db')}"
                    if cluster is None
                    else cluster.create_database(name)
                )
                await upgrade_async(url)
                try:
                    got = await asyncio.to_thread(
                        run_child, phase, broker.bootstrap_servers, url, f"127.0.0.1:{port}", args
                    )
                except subprocess.TimeoutExpired:
                    print(
                        f"round {n + 1}/{args.rounds} {phase}: over {args.phase_timeout:.0f}s, "
                        "stopping with the phases done so far",
                        file=sys.stderr,
                    )
                    raise _Overrun from None
                results[phase] += got
                print(
                    f"round {n + 1}/{args.rounds} {phase:<3} {len(got)} heads, "
                    f"p50 {pct(got, 0.5) * 1000:.0f} ms "
                    f"({time.monotonic() - started:.0f}s elapsed)",
                    file=sys.stderr,
                    flush=True,
                )
    except _Overrun:
        pass
    finally:
        await broker.stop()
        receiver.terminate()
        if cluster is not None:
            cluster.destroy()
    off, on = results["off"], results["on"]
    if not off or not on:
        print("no complete off/on pair: no figure (raise --phase-timeout or lower --heads)")
        return
    print(
        f"storage            {'SQLite' if cluster is None else 'PostgreSQL 15'}; broker Tansu (memory)"
    )
    print(
        f"heads per phase    {len(off)} / {len(on)}: {args.rounds} rounds, phases alternated, "
        f"{args.queues} queue(s) x {args.heads} heads"
    )
    print(
        f"telemetry off      p50 {pct(off, 0.5) * 1000:.0f} ms   p99 {pct(off, 0.99) * 1000:.0f} ms"
    )
    print(
        f"telemetry on       p50 {pct(on, 0.5) * 1000:.0f} ms   p99 {pct(on, 0.99) * 1000:.0f} ms"
    )
    print(
        f"ratio on/off       p50 {pct(on, 0.5) / pct(off, 0.5):.2f}   p99 {pct(on, 0.99) / pct(off, 0.99):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8, help="sequential heads per queue")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, order alternated")
    parser.add_argument(
        "--phase-timeout", type=float, default=240.0, help="seconds one phase may take"
    )
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    parser.add_argument("--phase", choices=["off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        asyncio.run(child(args.phase, args.bootstrap, args.database_url, args.otlp, args))
    else:
        asyncio.run(main(args))
