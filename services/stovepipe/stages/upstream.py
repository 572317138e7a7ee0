"""upstream: when a Queue records a new green commit, ingest the Queues that depend on it.

Consumes the verdict events (``stovepipe.hook``) in its own consumer group, so
it neither changes the record stage nor competes with other readers. The
event is a notice, not evidence: anyone who can produce to the topic could
write one, so nothing is triggered unless storage agrees that the named
commit's fact is green and was written by the named Request. Only an event
whose commit took the bookmark (a *new* green) triggers; a broken verdict,
or a green that an earlier green already outran, triggers nothing.

Each dependent Queue is ingested through the same path as the API, with
trigger ``upstream`` and the upstream Queue, commit and Request as trigger
details; the dependent Request records every upstream's current green commit
(``upstream_greens``), which its verdict carries on. Redelivery is harmless:
the same dependent head deduplicates to the same Request.
"""

from __future__ import annotations

import logging

from stovepipe.config import StovepipeConfig
from stovepipe.domain import WHOLE_REPO, TriggerKind
from stovepipe.domain.trigger import UPSTREAM_QUEUE, UPSTREAM_REQUEST, UPSTREAM_URI
from stovepipe.hooks.events import VERDICT_RECORDED
from stovepipe.stages.ingest import HeadIngester
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)


class UpstreamTrigger:
    """Turns a verified new green of one Queue into ingests of its dependents."""

    def __init__(self, store: Store, config: StovepipeConfig, ingester: HeadIngester) -> None:
        self._store = store
        self._config = config
        self._ingester = ingester

    async def __call__(self, event: topics_pb2.HookEvent) -> None:
        data = event.data
        if event.type != VERDICT_RECORDED:  # one event per verdict; transitions repeat it
            return
        if not data.green or not data.took_bookmark or data.project != WHOLE_REPO:
            return
        dependents = self._config.dependents_of(data.queue)
        if not dependents:
            return
        fact = await self._store.get_fact(data.queue, data.uri, WHOLE_REPO)
        if fact is None or not fact.green or fact.request_id != data.request_id:
            log.warning(
                "upstream: event %s says %s is green in %s, storage does not agree; ignored",
                event.id,
                data.uri,
                data.queue,
            )
            return
        details = {
            UPSTREAM_QUEUE: data.queue,
            UPSTREAM_URI: data.uri,
            UPSTREAM_REQUEST: data.request_id,
        }
        for name in dependents:
            result = await self._ingester.ingest(name, TriggerKind.UPSTREAM, details=details)
            log.info(
                "upstream: %s green at %s -> %s %s%s",
                data.queue,
                data.uri,
                name,
                result.request.id,
                " (already known)" if result.duplicate else "",
            )
