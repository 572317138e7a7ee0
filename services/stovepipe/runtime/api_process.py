"""``stovepipe api``: the gRPC API as a process."""

from __future__ import annotations

import asyncio
import logging
import signal

from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import StovepipeConfig
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.logs import configure_logging
from stovepipe.runtime.pipeline import open_pipeline

log = logging.getLogger(__name__)


async def run_api(config: StovepipeConfig) -> None:
    configure_logging("api")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_pipeline(config, "stovepipe-api") as pipeline:
        parts = pipeline.parts
        events = EventFeed(pipeline.messaging.settings, parts.store)
        api = StovepipeApi(
            parts.store, config, parts.ingester(), parts.revalidator(), events=events
        )
        server = await serve_api(api, config.api.listen, tokens=config.api_tokens())
        log.info("API listening on %s", server.address)
        print(f"listening on {config.api.listen}", flush=True)
        await stop.wait()
        await server.stop(grace=5.0)
        await events.close()
