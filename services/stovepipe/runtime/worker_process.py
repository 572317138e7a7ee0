"""``stovepipe worker <stage>``: one pipeline stage (or the delay forwarder) as a process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

from stovepipe.config import StovepipeConfig
from stovepipe.delays import DEFAULT_TIERS_S, tier_topic
from stovepipe.messaging import ensure_topics
from stovepipe.runtime.broker_watch import EXIT_RESTART, watch_topics
from stovepipe.runtime.bus import all_topics, kafka_settings, open_bus, run_delay_forwarder
from stovepipe.runtime.logs import configure_logging
from stovepipe.runtime.wiring import (
    Collaborators,
    open_extensions,
    open_store,
    reconcile_handlers,
    stage_handlers,
)

log = logging.getLogger(__name__)

STAGES = ("process", "build", "buildsignal", "record", "reconcile")


async def run_worker(config: StovepipeConfig, stage: str) -> None:
    """Consume the stage's topic until SIGTERM, then drain in-flight work and stop."""
    configure_logging(f"worker-{stage}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stage == "delay":
        async with _restart_on_empty_broker(
            config, stage, [tier_topic(t) for t in DEFAULT_TIERS_S]
        ):
            await run_delay_forwarder(config, stop)
        return
    if stage == "sweeper":
        await run_sweeper(config, stop)
        return
    async with (
        open_store(config) as store,
        open_extensions(config) as extensions,
        open_bus(config, client_id=f"stovepipe-{stage}") as bus,
    ):
        parts = Collaborators(config, store, extensions, bus, bus)
        if stage == "reconcile":
            handlers = reconcile_handlers(parts)
        else:
            handlers = {stage: stage_handlers(parts)[stage]}
        consumed = [topic for topic, _ in handlers.values()]
        async with _restart_on_empty_broker(config, stage, consumed), bus.consume_all(handlers):
            log.info("worker %s consuming %s", stage, ", ".join(t for t, _ in handlers.values()))
            print(f"worker {stage} ready", flush=True)
            await stop.wait()
            log.info("worker %s draining", stage)


async def run_sweeper(config: StovepipeConfig, stop: asyncio.Event) -> None:
    """Sweep every ``stale_after / 4`` until stopped; safe with several replicas."""
    stale_after = timedelta(seconds=config.workers.sweeper_stale_after_seconds)
    async with (
        open_store(config) as store,
        open_extensions(config) as extensions,
        open_bus(config, client_id="stovepipe-sweeper") as bus,
    ):
        sweeper = Collaborators(config, store, extensions, bus, bus).sweeper()
        print("worker sweeper ready", flush=True)
        while not stop.is_set():
            try:
                await sweeper.sweep_once(stale_after)
            except Exception:  # a failed pass is retried on the next tick
                log.exception("sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), stale_after.total_seconds() / 4)


@contextlib.asynccontextmanager
async def _restart_on_empty_broker(
    config: StovepipeConfig, stage: str, topics: Iterable[str]
) -> AsyncIterator[None]:
    """Exit with ``EXIT_RESTART`` when the broker comes back without our topics.

    Nothing is committed or drained: whatever was in flight was lost with the
    broker, storage still has the truth, and the sweeper re-drives it.
    """

    def restart(missing: list[str]) -> None:
        log.error(
            "worker %s: the broker lost its topics (%s); exiting with %d to be started afresh",
            stage,
            ", ".join(missing[:5]),
            EXIT_RESTART,
        )
        logging.shutdown()
        os._exit(EXIT_RESTART)

    settings = kafka_settings(config, f"stovepipe-{stage}")
    await ensure_topics(settings, all_topics())  # the marker must exist before it is watched
    watch = asyncio.create_task(watch_topics(settings, list(topics), restart))
    try:
        yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
