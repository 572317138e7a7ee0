"""``stovepipe worker delay``: the delay-tier forwarder as a worker."""

from __future__ import annotations

import asyncio

from stovepipe.config import StovepipeConfig
from stovepipe.delays import DEFAULT_TIERS_S, DelayForwarder, tier_topic
from stovepipe.messaging import PIPELINE_TOPICS
from stovepipe.messaging.broker import transport_limit
from stovepipe.runtime.wiring import kafka_settings


async def run_delay_forwarder(config: StovepipeConfig, stop: asyncio.Event) -> None:
    """Forward due tier records to their pipeline topic until ``stop`` is set.

    A forwarder that died takes the worker with it (its supervisor restarts
    it): waiting for ``stop`` alone would leave a live process forwarding nothing.
    """
    settings = kafka_settings(config, "stovepipe-delay")
    tiers = {settings.topic(tier_topic(t)): t for t in DEFAULT_TIERS_S}
    forwarder = DelayForwarder(
        settings.bootstrap_servers,
        list(tiers),
        group_id=settings.group("delay"),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        allowed_targets=frozenset(settings.topic(t.name) for t in PIPELINE_TOPICS),
        max_request_size=transport_limit(settings),
        tier_delays=tiers,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )
    task = asyncio.create_task(forwarder.run())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    forwarder.stop()
    await task
