"""``stovepipe worker <stage>``: one registered stage as a process.

Readiness is served as gRPC health on ``--health-port`` (see
:mod:`stovepipe.runtime.health`): SERVING once the consumers have joined their
groups (or the runner has started), NOT_SERVING from SIGTERM on. The
``worker <stage> ready`` line on stdout is for people reading the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable

from stovepipe.config import StovepipeConfig
from stovepipe.messaging import ensure_topics
from stovepipe.runtime.broker_watch import EXIT_RESTART, watch_topics
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.processes import stop_on_signals
from stovepipe.runtime.registry import Ready, Stage, all_topics, stage
from stovepipe.runtime.wiring import kafka_settings
from stovepipe.telemetry.process import process_telemetry

log = logging.getLogger(__name__)


async def run_worker(
    config: StovepipeConfig,
    name: str,
    health_listen: str | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Run the stage until SIGTERM, then drain in-flight work and stop.

    With ``health_listen`` (``host:port``) the worker serves its readiness there;
    with a metrics port (argument or ``telemetry.metrics_port``), its ``/metrics``.
    """
    with process_telemetry(
        config, f"worker-{name}", metrics_port=metrics_port, metrics_host=metrics_host
    ):
        await _run_worker(config, name, health_listen)


async def _run_worker(config: StovepipeConfig, name: str, health_listen: str | None) -> None:
    entry = stage(name)
    stop = stop_on_signals()
    health = await WorkerHealth.open(health_listen)
    if health.address is not None:
        log.info("worker %s serves health on %s", name, health_listen)

    async def ready() -> None:
        await health.serving()
        print(f"worker {name} ready", flush=True)

    async def drain_when_stopped() -> None:
        await stop.wait()
        await health.draining()

    draining = asyncio.create_task(drain_when_stopped())
    try:
        async with _restart_on_empty_broker(config, name, entry.watched_topics):
            if entry.run is not None:
                await entry.run(config, stop, ready)
            else:
                await _consume(config, entry, stop, ready)
    finally:
        draining.cancel()
        await health.close()


async def _consume(
    config: StovepipeConfig, entry: Stage, stop: asyncio.Event, ready: Ready
) -> None:
    async with open_pipeline(config, f"stovepipe-{entry.name}") as pipeline:
        subscriptions = pipeline.subscriptions(entry)
        # entered once every consumer has joined its group and holds its partitions
        async with pipeline.messaging.consuming(subscriptions):
            log.info(
                "worker %s consuming %s", entry.name, ", ".join(t for t, _, _ in subscriptions)
            )
            await ready()
            await stop.wait()
            log.info("worker %s draining", entry.name)


@contextlib.asynccontextmanager
async def _restart_on_empty_broker(
    config: StovepipeConfig, name: str, topics: Iterable[str]
) -> AsyncIterator[None]:
    """Exit with ``EXIT_RESTART`` when the broker comes back without our topics.

    Nothing is committed or drained: whatever was in flight was lost with the
    broker, storage still has the truth, and the sweeper re-drives it.
    """
    watched = list(topics)
    if not watched:
        yield
        return

    def restart(missing: list[str]) -> None:
        log.error(
            "worker %s: the broker lost its topics (%s); exiting with %d to be started afresh",
            name,
            ", ".join(missing[:5]),
            EXIT_RESTART,
        )
        logging.shutdown()
        os._exit(EXIT_RESTART)

    settings = kafka_settings(config, f"stovepipe-{name}")
    await ensure_topics(settings, all_topics())  # the marker must exist before it is watched
    watch = asyncio.create_task(watch_topics(settings, watched, restart))
    try:
        yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
