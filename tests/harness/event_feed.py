"""The events of one :meth:`EventFeed.watch`, without its cursors and ready item.

The product serves ``watch`` (WatchEvents, the console); tests that only care
about which events arrive read them through this.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from stovepipe.runtime.event_feed import EventFeed
from stovepipe.v1 import topics_pb2


async def events(feed: EventFeed, owner: str = "") -> AsyncIterator[topics_pb2.HookEvent]:
    """Verified events from now on; raises what ``watch`` raises before the first one."""
    async with contextlib.aclosing(feed.watch(owner)) as items:
        async for item in items:
            if item.event is not None:
                yield item.event
