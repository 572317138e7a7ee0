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
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from stovepipe.domain import Request
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.storage import VersionMismatch
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)


class StaleRequestSweeper(StageBase):
    """One pass: find stale Requests, claim each, republish it to process."""

    async def sweep_once(self, stale_after: timedelta, limit: int = 200) -> list[str]:
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
            await self._publisher.publish(
                topics.PROCESS,
                topics_pb2.ProcessMessage(request_id=request.id, queue=request.queue),
            )
            redriven.append(request.id)
        if redriven:
            log.warning("re-drove %d stale request(s): %s", len(redriven), ", ".join(redriven))
        return redriven

    async def _build_alive(self, request: Request, cutoff: datetime) -> bool:
        if not request.build_id:
            return False
        build = await self._store.get_build(request.queue, request.build_id)
        return build is not None and not build.status.terminal and build.updated_at > cutoff
