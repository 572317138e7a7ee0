"""Wait for verdicts the way a downstream team does: one ``WatchEvents`` stream.

The benchmarks used to poll ``GetGreenness`` per head (every 0.5 s in
``throughput.py``, every 5 ms in ``pipeline_latency.py``); those questions were
most of the API's CPU per head, and in ``pipeline_latency.py`` they shared the
pipeline's own event loop. One stream, opened before the first Ingest, costs
the API one push per verdict.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stovepipe.hooks.events import VERDICT_RECORDED
from stovepipe.v1 import stovepipe_service_pb2 as pb


class VerdictWatch:
    """Every verdict recorded, from one ``WatchEvents`` stream, by commit URI.

    A head whose event has not come within ``CHECK_AFTER_S`` is asked for once
    with ``GetGreenness`` (and again every ``CHECK_AFTER_S``): an event feed that
    broke must not hang the benchmark, and a verdict stored is what counts.
    """

    CHECK_AFTER_S = 30.0

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self._seen: set[str] = set()
        self._waiting: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._read(ready))
        await asyncio.wait_for(ready.wait(), 60)

    async def _read(self, ready: asyncio.Event) -> None:
        async for response in self._stub.WatchEvents(pb.WatchEventsRequest()):
            if response.ready:
                ready.set()
            if response.event.type != VERDICT_RECORDED or response.event.data.project:
                continue
            uri = response.event.data.uri
            self._seen.add(uri)
            if uri in self._waiting:
                self._waiting[uri].set()

    async def recorded(self, stub: Any, queue: str, uri: str) -> None:
        event = self._waiting.setdefault(uri, asyncio.Event())
        if uri in self._seen:
            return
        while True:
            try:
                await asyncio.wait_for(event.wait(), self.CHECK_AFTER_S)
                return
            except TimeoutError:
                answer = await stub.GetGreenness(pb.GetGreennessRequest(queue=queue, uri=uri))
                if answer.status == pb.GREENNESS_STATUS_RECORDED:
                    return

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
