"""``stovepipe worker <stage>``: one registered stage as a process, or ``all`` of them.

``worker all`` runs every registered stage in one process: the consuming
stages share one storage pool, one set of extension channels and one producer,
and the stages with a runner of their own (delay, hooks, sweeper) run beside
them as tasks. That is what ``stovepipe up`` starts by default: one process
instead of ten, so less idle CPU and less per-head CPU spent crossing
processes. Production keeps one process per stage (``deploy/``), which scales
and fails per stage; a stage that crashes in ``all`` takes the others with it
and the supervisor restarts them together (handlers are idempotent and
nothing is committed before it is done, so that costs only time).

Readiness is served as gRPC health on ``--health-port`` (see
:mod:`stovepipe.runtime.health`): SERVING once every consumer has joined its
group and every runner has started, NOT_SERVING from SIGTERM on. The
``worker <stage> ready`` line on stdout is for people reading the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Iterable

from stovepipe.config import StovepipeConfig
from stovepipe.messaging import ensure_topics
from stovepipe.runtime.broker_watch import EXIT_RESTART, watch_topics
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.processes import stop_on_signals
from stovepipe.runtime.registry import Ready, Stage, all_topics, stages_named
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
    entries = stages_named(name)
    stop = stop_on_signals()
    health = await WorkerHealth.open(health_listen)
    if health.address is not None:
        log.info("worker %s serves health on %s", name, health_listen)
    runners = [entry for entry in entries if entry.run is not None]
    consumers = [entry for entry in entries if entry.run is None and entry.handlers is not None]
    pending = len(runners) + (1 if consumers else 0)

    async def ready() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            await health.serving()
            print(f"worker {name} ready", flush=True)

    async def drain_when_stopped() -> None:
        await stop.wait()
        await health.draining()

    watched = dict.fromkeys(topic for entry in entries for topic in entry.watched_topics)
    draining = asyncio.create_task(drain_when_stopped())
    try:
        async with _restart_on_empty_broker(config, name, watched):
            parts = [entry.run(config, stop, ready) for entry in runners if entry.run is not None]
            if consumers:
                parts.append(_consume(config, name, consumers, stop, ready))
            await _together(parts)
    finally:
        draining.cancel()
        await health.close()


async def _together(parts: list[Awaitable[None]]) -> None:
    """Run ``parts`` until all end; the first failure cancels the rest and is raised
    as it is (not as a group), so a start-up error reads the same in both modes."""
    if len(parts) == 1:
        await parts[0]
        return
    try:
        async with asyncio.TaskGroup() as group:
            for part in parts:
                group.create_task(_awaited(part))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


async def _awaited(part: Awaitable[None]) -> None:
    await part


async def _consume(
    config: StovepipeConfig, name: str, entries: list[Stage], stop: asyncio.Event, ready: Ready
) -> None:
    async with open_pipeline(config, f"stovepipe-{name}") as pipeline:
        subscriptions = pipeline.subscriptions(*entries)
        # entered once every consumer has joined its group and holds its partitions
        async with pipeline.messaging.consuming(subscriptions):
            log.info("worker %s consuming %s", name, ", ".join(t for t, _, _ in subscriptions))
            await ready()
            await stop.wait()
            log.info("worker %s draining", name)


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
