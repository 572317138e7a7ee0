"""Fan-out of build-ended notices to the runner's ``WatchBuilds`` streams.

A runner calls :meth:`EndedFeed.publish` once a build's end is durable; each
open watch gets its own bounded queue, so one slow watcher never holds back a
build or another watcher. A watcher that falls that far behind loses notices
(logged): a notice is only a hint, and the watcher's polling finds the build.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stovepipe.extensions.buildrunner.model import BuildEnded

_log = logging.getLogger(__name__)

BACKLOG_PER_WATCHER = 10_000
"""Notices kept for one watcher that is not reading; the oldest are not dropped, the
newest are (the watcher's polling covers every build either way)."""


class EndedFeed:
    """Open watches and the notices waiting for them."""

    def __init__(self, backlog: int = BACKLOG_PER_WATCHER) -> None:
        self._backlog = backlog
        self._watchers: set[asyncio.Queue[BuildEnded]] = set()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def publish(self, ended: BuildEnded) -> None:
        for queue in self._watchers:
            try:
                queue.put_nowait(ended)
            except asyncio.QueueFull:
                _log.warning(
                    "a WatchBuilds watcher is %d notices behind; %s is left to its polling",
                    self._backlog,
                    ended.build_id,
                )

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[BuildEnded]]:
        """Registered on entry (every build ending after that is delivered), removed on exit."""
        queue: asyncio.Queue[BuildEnded] = asyncio.Queue(self._backlog)
        self._watchers.add(queue)
        try:
            yield _drain(queue)
        finally:
            self._watchers.discard(queue)


async def _drain(queue: asyncio.Queue[BuildEnded]) -> AsyncIterator[BuildEnded]:
    while True:
        yield await queue.get()
