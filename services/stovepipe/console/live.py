"""One ``WatchEvents`` stream per console process, fanned out to every open page.

Browsers connect with server-sent events; each gets a bounded queue. The
upstream stream is opened while at least one page listens and re-opened with
a backoff when the API drops it, so a restart of the API costs a page nothing
but the events recorded while it was down (the page catches up by re-reading
its fragment whenever its event source (re)connects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from stovepipe.console.client import ApiUnavailable, ConsoleClient
from stovepipe.console.views import fact_state
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)

QUEUE_DEPTH = 100
KEEPALIVE_S = 15.0
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
RESYNC = "resync"
"""Sent to every page when the upstream stream re-opens after a failure."""


class LiveFeed:
    """Fans one upstream event stream out to page subscribers."""

    def __init__(self, client: ConsoleClient) -> None:
        self._client = client
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def streaming(self) -> bool:
        """True while the upstream stream is wanted (some page listens)."""
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_DEPTH)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console live feed")
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers and self._task is not None:
                self._task.cancel()  # the API's stream slot is not held for nobody

    async def _run(self) -> None:
        failures = 0
        while self._subscribers:
            if failures:
                # Verdicts recorded while the stream was down were missed: every page
                # re-reads what it shows.
                self._send(RESYNC)
            try:
                stream = self._client.watch([])
                async for event in stream:
                    failures = 0
                    self._publish(event.data)
            except ApiUnavailable as exc:
                log.warning("live feed: %s", exc)
            pause = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
            failures += 1
            await asyncio.sleep(pause)

    def _publish(self, data: topics_pb2.GreennessEventData) -> None:
        fact = types_pb2.ValidationFact(degree=data.degree, origin=data.origin)
        payload = json.dumps(
            {
                "queue": data.queue,
                "uri": data.uri,
                "project": data.project,
                "state": fact_state(fact),
            },
            separators=(",", ":"),
        )
        self._send(payload)

    def _send(self, payload: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # the page re-reads its fragment anyway
            queue.put_nowait(payload)
