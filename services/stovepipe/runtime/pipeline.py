"""What a pipeline process opens: storage, extension clients and messaging, as collaborators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from stovepipe.config import StovepipeConfig
from stovepipe.messaging import Bus, DeliveryHandler, ensure_topics
from stovepipe.runtime.registry import Stage, all_topics, failure_rules, in_flight_limits
from stovepipe.runtime.stage_messaging import StageMessaging
from stovepipe.runtime.wiring import Collaborators, kafka_settings, open_extensions, open_store


@dataclass
class OpenPipeline:
    """The collaborators of one process and the messaging they publish through."""

    parts: Collaborators
    messaging: StageMessaging

    def subscriptions(self, *stages: Stage) -> list[tuple[str, str, DeliveryHandler]]:
        """``(topic, group, handler)`` for every topic the given stages consume."""
        out: list[tuple[str, str, DeliveryHandler]] = []
        for stage in stages:
            if stage.handlers is None:
                continue
            for consumption in stage.handlers(self.parts):
                out.append((consumption.topic.name, consumption.group, consumption.handler))
        return out


@asynccontextmanager
async def open_pipeline(config: StovepipeConfig, client_id: str) -> AsyncIterator[OpenPipeline]:
    """Open storage, extensions and messaging (topics created first); close all on exit."""
    settings = kafka_settings(config, client_id)
    await ensure_topics(settings, all_topics())
    async with open_store(config) as store, open_extensions(config) as extensions:
        bus = Bus(settings)
        messaging = StageMessaging(bus, failure_rules(config), in_flight_limits(config))
        await bus.start()
        try:
            parts = Collaborators(config, store, extensions, messaging, messaging)
            yield OpenPipeline(parts, messaging)
        finally:
            await bus.stop()
