"""``stovepipe api``: the gRPC API as a process."""

from __future__ import annotations

import logging

from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import StovepipeConfig
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.logs import configure_logging
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.processes import stop_on_signals

log = logging.getLogger(__name__)


async def run_api(config: StovepipeConfig) -> None:
    configure_logging("api")
    stop = stop_on_signals()
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
