"""ingest: turn "Queue Q moved" into a Request and hand it to process.

Runs inside the API server (``Ingest`` RPC), not on a topic. Steps: resolve
the head through SourceControl, mint or find the Request for ``(queue, uri)``,
advance the Queue's ``latest_request_id`` by CAS, publish to process.

A crash after the Request is stored but before the publish leaves it
``accepted``; re-reporting the same head publishes again (the Request is
returned as a duplicate), and the sweeper re-drives it otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from stovepipe.domain import Request, validate_queue_name
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import process_message
from stovepipe.stages.ports import queue_source

MAX_TRIGGER_LENGTH = 64


@dataclass(frozen=True, slots=True)
class IngestResult:
    request: Request
    duplicate: bool


class HeadIngester(StageBase):
    """Mints (or finds) the Request for a Queue's current head.

    It is also the API's one door to SourceControl for read questions about the
    branch (``head``, ``on_branch``), so the API holds no extension clients of its own.
    """

    async def head(self, queue: str) -> str:
        """The URI of the Queue's head now (no Request is created)."""
        config = self._queues.queue(queue)
        return await self._extensions.source_control(config).resolve_head(queue_source(config))

    async def on_branch(self, queue: str, uri: str, head: str) -> Ancestry:
        """Whether ``uri`` is reachable from ``head`` (``UNKNOWN`` when SourceControl cannot
        tell, for example because the commit is gone)."""
        config = self._queues.queue(queue)
        return await self._extensions.source_control(config).is_ancestor(
            queue_source(config), uri, head
        )

    async def ingest(self, queue: str, trigger: str) -> IngestResult:
        validate_queue_name(queue)
        config = self._queues.queue(queue)
        trigger = (trigger or "unspecified")[:MAX_TRIGGER_LENGTH]
        uri = await self._extensions.source_control(config).resolve_head(queue_source(config))
        request, created = await self._store.create_request(
            queue, uri, trigger=trigger, now=self._clock()
        )
        await queue_ops.advance_latest(self._store, queue, request.id, self._clock)
        if not request.terminal:
            await self._publisher.publish(topics.PROCESS, process_message(request))
        return IngestResult(request=request, duplicate=not created)
