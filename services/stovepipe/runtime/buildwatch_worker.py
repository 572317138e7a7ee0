"""``stovepipe worker buildwatch``: the runners' pushed build ends, onto buildsignal."""

from __future__ import annotations

import asyncio

from stovepipe.config import StovepipeConfig
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.registry import Ready
from stovepipe.stages.buildwatch import BuildWatcher, runners_by_name


async def run_build_watch(
    config: StovepipeConfig, stop: asyncio.Event, ready: Ready | None = None
) -> None:
    """Follow every configured runner's ``WatchBuilds`` until stopped.

    Several replicas are safe (each notice is then forwarded once per replica, and
    buildsignal settles a build once whatever the number of messages); ``ready``
    is called once messaging is open, not once every runner answers, since a
    runner that is down is polled anyway.
    """
    async with open_pipeline(config, "stovepipe-buildwatch") as pipeline:
        parts = pipeline.parts
        runners = runners_by_name(config.queues, parts.extensions.build_runner)
        watcher = BuildWatcher(runners, parts.publisher)
        if ready is not None:
            await ready()
        await watcher.run(stop)
