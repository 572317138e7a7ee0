"""``stovepipe worker sweeper``: the periodic repairs, from storage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from stovepipe.config import StovepipeConfig
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.registry import Ready

log = logging.getLogger(__name__)


async def run_sweeper(
    config: StovepipeConfig, stop: asyncio.Event, ready: Ready | None = None
) -> None:
    """Sweep every ``stale_after / 4`` until stopped; safe with several replicas.

    ``ready`` is called once storage and messaging are open.
    """
    stale_after = timedelta(seconds=config.workers.sweeper_stale_after_seconds)
    async with open_pipeline(config, "stovepipe-sweeper") as pipeline:
        sweeper = pipeline.parts.sweeper()
        if ready is not None:
            await ready()
        while not stop.is_set():
            try:
                await sweeper.sweep_once(stale_after)
            except Exception:  # a failed pass is retried on the next tick
                log.exception("sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), stale_after.total_seconds() / 4)
