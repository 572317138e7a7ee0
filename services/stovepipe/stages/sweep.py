"""sweeper: re-drive Requests that stopped moving, from storage.

Messages can be lost with the broker (the embedded broker keeps nothing across
a restart); storage cannot. The sweeper lists non-terminal Requests unchanged
for ``stale_after`` and republishes a ``ProcessMessage`` for each, which takes
an ``accepted`` Request through admission again and a ``processing`` one back to
build (which, holding a build id, goes straight back to polling).

A running build is not stale while buildsignal keeps its heartbeat fresh, so a
long build is left alone. Before re-driving, the sweeper *claims* the Request
with a CAS that only bumps its version and ``updated_at``: with several sweeper
replicas exactly one wins each Request, and the claim restarts its staleness
clock.

The sweeper also repairs what a lost *record* message leaves behind, which
the pass above cannot see because those Requests are already terminal: a
settled Request without a fact, a green fact that never moved the bookmark,
and a promotion ref left behind the bookmark. The first two are mended by
republishing the ``RecordMessage`` (record is idempotent), the last by asking
SourceControl to promote the bookmark again (a CAS that never moves back).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from stovepipe.config import UnknownQueue
from stovepipe.domain import QueueState, Request, RequestState, is_newer
from stovepipe.failures import short_reason
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import process_message, record_message
from stovepipe.stages.ports import queue_source
from stovepipe.storage import VersionMismatch

log = logging.getLogger(__name__)


class StaleRequestSweeper(StageBase):
    """One pass: find stale Requests, claim each, republish it to process."""

    async def sweep_once(
        self,
        stale_after: timedelta,
        limit: int = 200,
        lookback: timedelta = timedelta(days=1),
    ) -> list[str]:
        """One pass; returns the ids of the Requests re-driven or re-recorded."""
        redriven = await self._redrive_unfinished(stale_after, limit)
        return redriven + await self._repair_records(stale_after, limit, lookback)

    async def _redrive_unfinished(self, stale_after: timedelta, limit: int) -> list[str]:
        now = self._clock()
        cutoff = now - stale_after
        redriven: list[str] = []
        for request in await self._store.list_unfinished_requests(cutoff, limit):
            if await self._build_alive(request, cutoff):
                continue
            claimed = dataclasses.replace(request, version=request.version + 1, updated_at=now)
            try:
                await self._store.update_request(request, claimed)
            except VersionMismatch:
                continue
            await self._publisher.publish(topics.PROCESS, process_message(claimed))
            redriven.append(request.id)
        if redriven:
            log.warning("re-drove %d stale request(s): %s", len(redriven), ", ".join(redriven))
        return redriven

    async def _build_alive(self, request: Request, cutoff: datetime) -> bool:
        if not request.build_id:
            return False
        build = await self._store.get_build(request.queue, request.build_id)
        return build is not None and not build.status.terminal and build.updated_at > cutoff

    async def _repair_records(
        self, stale_after: timedelta, limit: int, lookback: timedelta
    ) -> list[str]:
        now = self._clock()
        cutoff = now - stale_after
        wanted: dict[str, Request] = {
            r.id: r
            for r in await self._store.list_unrecorded_requests(cutoff - lookback, cutoff, limit)
        }
        for queue in await self._store.list_queues():
            if queue.updated_at >= cutoff:
                continue
            newest_green = await self._store.list_requests(
                queue.name, states=[RequestState.SUCCEEDED], limit=1
            )
            if (
                newest_green
                and newest_green[0].updated_at < cutoff
                and is_newer(newest_green[0].id, queue.last_green_request_id)
            ):
                wanted.setdefault(newest_green[0].id, newest_green[0])
            await self._reassert_promotion(queue)
        for request in wanted.values():
            await self._publisher.publish(topics.RECORD, record_message(request))
        if wanted:
            log.warning("re-recorded %d verdict(s): %s", len(wanted), ", ".join(wanted))
        return list(wanted)

    async def _reassert_promotion(self, queue: QueueState) -> None:
        if not queue.last_green_uri:
            return
        try:
            config = self._queues.queue(queue.name)
        except UnknownQueue:
            return  # a Queue removed from the configuration keeps its data, not its ref
        if not config.promotion_ref:
            return
        try:
            result = await self._extensions.source_control(config).promote(
                queue_source(config), queue.last_green_uri, config.promotion_ref
            )
        except Exception as exc:  # the next pass tries again
            log.warning("%s: promotion check failed: %s", queue.name, short_reason(exc))
            return
        if result.moved:
            log.warning(
                "%s: %s was behind the bookmark; moved to %s",
                queue.name,
                config.promotion_ref,
                queue.last_green_uri,
            )
