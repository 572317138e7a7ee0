"""``stovepipe worker <stage>``: one pipeline stage (or the delay forwarder) as a process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

from stovepipe.config import StovepipeConfig
from stovepipe.runtime.bus import open_bus, run_delay_forwarder
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
        async with bus.consume_all(handlers):
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
