"""ingest: turn "Queue Q moved" into a Request and hand it to process.

Runs inside whichever process hears of the move: the API server (``Ingest``
RPC), the built-in poller, the push-webhook receiver and the upstream stage all
call this one path. Steps: resolve the head through SourceControl (a pushed
sha is a hint only, never the verdict's subject), read the last green commit
of every Queue this one ``depends_on``, mint or find the Request for
``(queue, uri)``, advance the Queue's ``latest_request_id`` by CAS, publish to
process. The commit's title and revision (SourceControl's ``DescribeCommit``)
are read alongside the upstream bookmarks and kept on the Request, so history
and the console show the title, and the runner gets the revision with its
build, without asking SourceControl again; a SourceControl that cannot
describe the commit costs the title, never the ingest.

A crash after the Request is stored but before the publish leaves it
``accepted``; re-reporting the same head publishes again (the Request is
returned as a duplicate), and the sweeper re-drives it otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from stovepipe.config import QueueConfig
from stovepipe.domain import Request, UpstreamGreen, validate_queue_name
from stovepipe.domain.trigger import MAX_TRIGGER_LENGTH, TriggerKind, trigger_details
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.redaction import redact_line
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import process_message
from stovepipe.stages.ports import queue_source

__all__ = ["MAX_TRIGGER_LENGTH", "HeadIngester", "IngestResult"]

log = logging.getLogger(__name__)

MAX_TITLE_LENGTH = 200
"""Characters of a commit title kept on the Request (the column holds 256)."""
TITLE_TIMEOUT_S = 5.0
"""How long ingest waits for a title before going on without one."""
_PLAIN_REVISION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/+:@-]{0,255}")
"""A revision kept for the runner: a bounded name without spaces or control characters
(the column holds 256); anything else is not kept and the runner asks for it itself."""


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

    async def ingest(
        self,
        queue: str,
        trigger: str,
        *,
        details: Mapping[str, str] | None = None,
        resolved_uri: str | None = None,
    ) -> IngestResult:
        """``resolved_uri`` is for a caller that has just resolved the head through the
        same SourceControl (the poller): it saves a second ResolveHead. Nothing that
        came from outside (a webhook payload) may be passed as it."""
        validate_queue_name(queue)
        config = self._queues.queue(queue)
        trigger = (trigger or TriggerKind.MANUAL)[:MAX_TRIGGER_LENGTH]
        pairs = trigger_details(details)
        uri = resolved_uri or await self._extensions.source_control(config).resolve_head(
            queue_source(config)
        )
        (title, head_revision), upstream_greens = await asyncio.gather(
            self._describe(config, uri), self._upstream_greens(config.depends_on)
        )
        async with self._store.unit():  # the Request and the Queue's latest head together
            request, created = await self._store.create_request(
                queue,
                uri,
                trigger=trigger,
                now=self._clock(),
                trigger_details=pairs,
                upstream_greens=upstream_greens,
                title=title,
                head_revision=head_revision,
            )
            await queue_ops.advance_latest(self._store, queue, request.id, self._clock)
        if not request.terminal:
            await self._publisher.publish(topics.PROCESS, process_message(request))
        return IngestResult(request=request, duplicate=not created)

    async def _describe(self, config: QueueConfig, uri: str) -> tuple[str, str]:
        """The commit's title (redacted, bounded) and its VCS-native revision; both empty
        when SourceControl cannot say. The revision goes to the runner with the build,
        so describing the head once here spares the runner asking again; one it cannot
        use (too long, or not a plain name) is dropped and the runner asks as before."""
        try:
            info = await self._extensions.source_control(config).describe_commit(
                queue_source(config), uri, timeout_s=TITLE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("%s: no title for %s: %s", config.name, uri, exc.code().name)
            return "", ""
        revision = info.revision if _PLAIN_REVISION.fullmatch(info.revision) else ""
        return redact_line(info.title, MAX_TITLE_LENGTH), revision

    async def _upstream_greens(self, upstreams: tuple[str, ...]) -> tuple[UpstreamGreen, ...]:
        """The bookmark of every upstream Queue now: what this head will be built against."""
        greens: list[UpstreamGreen] = []
        for name in upstreams:
            state = await self._store.get_queue(name)
            if state is not None and state.last_green_uri and state.last_green_request_id:
                greens.append(
                    UpstreamGreen(name, state.last_green_uri, state.last_green_request_id)
                )
        return tuple(greens)
