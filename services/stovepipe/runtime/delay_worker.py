"""``stovepipe worker delay``: the delay-tier forwarder as a worker."""

from __future__ import annotations

import asyncio

from stovepipe.config import StovepipeConfig
from stovepipe.delays import DEFAULT_TIERS_S, DelayForwarder, tier_topic
from stovepipe.messaging import PIPELINE_TOPICS
from stovepipe.runtime.registry import Ready
from stovepipe.runtime.wiring import kafka_settings


async def run_delay_forwarder(
    config: StovepipeConfig, stop: asyncio.Event, ready: Ready | None = None
) -> None:
    """Forward due tier records to their pipeline topic until ``stop`` is set.

    ``ready`` is called once the forwarder holds its tier partitions. A
    forwarder that died takes the worker with it (its supervisor restarts it):
    waiting for ``stop`` alone would leave a live process forwarding nothing.
    """
    settings = kafka_settings(config, "stovepipe-delay")
    tiers = {settings.topic(tier_topic(t)): t for t in DEFAULT_TIERS_S}
    forwarder = DelayForwarder(
        settings,
        list(tiers),
        allowed_targets=frozenset(settings.topic(t.name) for t in PIPELINE_TOPICS),
        tier_delays=tiers,
    )
    task = asyncio.create_task(forwarder.run())
    stopped = asyncio.create_task(stop.wait())
    if ready is not None:
        started = asyncio.create_task(forwarder.started.wait())
        await asyncio.wait({task, stopped, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if forwarder.started.is_set() and not task.done():
            await ready()
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    forwarder.stop()
    await task
