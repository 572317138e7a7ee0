"""``stovepipe worker hooks``: the hook dispatcher.

It consumes ``stovepipe.hook`` in its own consumer group (intake: one delivery
row per matching subscription, :mod:`stovepipe.hooks.intake`) and delivers
from storage through the HooksService extensions, one lane per subscription
(:mod:`stovepipe.hooks.lanes`). Run one replica: two would each send a pending
delivery (still at least once, but twice as often).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stovepipe.config import StovepipeConfig
from stovepipe.hooks.intake import HookIntake
from stovepipe.hooks.lanes import Lanes
from stovepipe.messaging import HOOK, Delivery
from stovepipe.runtime.extension_registry import ExtensionRegistry
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.registry import Ready

GROUP = "hooks"


async def run_hooks_dispatcher(
    config: StovepipeConfig, stop: asyncio.Event, ready: Ready | None = None
) -> None:
    """Take events in and deliver them until ``stop`` is set."""
    async with open_pipeline(config, "stovepipe-hooks") as pipeline:
        parts = pipeline.parts
        registry = parts.extensions
        assert isinstance(registry, ExtensionRegistry)
        lanes = Lanes(parts.store, config, registry.hooks, parts.clock)
        intake = HookIntake(parts.store, config, parts.clock, lanes.wake)

        async def on_event(payload: Any, _delivery: Delivery) -> None:
            await intake(payload)

        async with pipeline.messaging.consuming([(HOOK.name, GROUP, on_event)]):
            if ready is not None:
                await ready()
            await lanes.run(stop)
