"""``stovepipe poller``: the built-in poller as a process (see :mod:`stovepipe.runtime.poller`).

Readiness is gRPC health on ``--health-port``, like a worker's: SERVING once the
start-up poll of every polled Queue has been attempted, NOT_SERVING from
SIGTERM on. Several replicas may run against one database: the poll leases
keep them from polling a Queue twice per tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from stovepipe.config import QueueConfig, StovepipeConfig
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.poller import Poller, PollerTuning
from stovepipe.stages.ports import queue_source
from stovepipe.storage.poll_leases import PollLeases
from stovepipe.telemetry.process import process_telemetry

log = logging.getLogger(__name__)


def replica_name() -> str:
    """Unique per process: host and pid (a restarted replica is a new holder; its old
    claims simply expire)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_poller(
    config: StovepipeConfig,
    health_listen: str | None = None,
    tuning: PollerTuning | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Poll until SIGTERM; with a metrics port (argument or ``telemetry.metrics_port``),
    serve ``/metrics``."""
    with process_telemetry(config, "poller", metrics_port=metrics_port, metrics_host=metrics_host):
        await _poll(config, health_listen, tuning)


async def _poll(
    config: StovepipeConfig, health_listen: str | None, tuning: PollerTuning | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = await WorkerHealth.open(health_listen)
    try:
        async with open_pipeline(config, "stovepipe-poller") as pipeline:
            parts = pipeline.parts
            ingester = parts.ingester()

            async def resolve(queue: QueueConfig, timeout_s: float) -> str:
                client = parts.extensions.source_control(queue)
                return await client.resolve_head(queue_source(queue), timeout_s=timeout_s)

            async def ingest(queue: QueueConfig, head: str, trigger: str) -> None:
                await ingester.ingest(queue.name, trigger, resolved_uri=head)

            poller = Poller(
                config.polled_queues,
                PollLeases(parts.store.engine),
                resolve,
                ingest,
                holder=replica_name(),
                tuning=tuning,
            )

            async def started() -> None:
                await health.serving()
                paused = [q.name for q in config.polled_queues if q.poll and not q.poll.enabled]
                log.info(
                    "poller polling %d queue(s)%s",
                    len(poller.queue_names),
                    f", {len(paused)} paused" if paused else "",
                )
                print("poller ready", flush=True)

            async def drain() -> None:
                await stop.wait()
                await health.draining()

            draining = asyncio.create_task(drain())
            try:
                await poller.run(stop, started)
            finally:
                draining.cancel()
    finally:
        await health.close()
