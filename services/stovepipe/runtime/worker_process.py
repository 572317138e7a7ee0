"""``stovepipe worker <stage>``: one pipeline stage (or the delay forwarder) as a process."""

from __future__ import annotations

import asyncio
import logging
import signal

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
