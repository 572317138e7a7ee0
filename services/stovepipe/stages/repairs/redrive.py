"""Re-drive non-terminal Requests that stopped moving.

Any message before a Request settled may be lost (the embedded broker keeps
nothing across a restart). Such a Request stays ``accepted`` or ``processing``
and unchanged; after ``stale_after`` this repair republishes a
``ProcessMessage`` for it: process takes an ``accepted`` one through admission
again and sends a ``processing`` one back to build, which, holding a build id,
resumes polling without a second build; an ``analyzing`` one goes to record,
which hands it to analyze for the project facts still missing.

A build that buildsignal still follows is left alone: its Build row is touched
at least once per heartbeat (``stovepipe.stages.liveness``). Before re-driving,
the repair *claims* the Request with a CAS that only bumps its version and
``updated_at``: with several sweeper replicas exactly one wins each Request,
and the claim restarts its staleness clock.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from stovepipe.domain import Request, RequestState
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import process_message
from stovepipe.stages.repairs.base import SweepPass
from stovepipe.storage import VersionMismatch

log = logging.getLogger(__name__)


class UnfinishedRequestRedriver(StageBase):
    """Claims each stale non-terminal Request and republishes it to process."""

    async def repair(self, sweep: SweepPass) -> list[str]:
        redriven: list[str] = []
        for request in await self._store.list_unfinished_requests(sweep.cutoff, sweep.limit):
            if await self._build_followed(request, sweep.cutoff):
                continue
            claimed = dataclasses.replace(
                request, version=request.version + 1, updated_at=sweep.now
            )
            try:
                await self._store.update_request(request, claimed)
            except VersionMismatch:
                continue  # another replica claimed it, or it moved after all
            await self._publisher.publish(topics.PROCESS, process_message(claimed))
            redriven.append(request.id)
        if redriven:
            log.warning("re-drove %d stale request(s): %s", len(redriven), ", ".join(redriven))
        return redriven

    async def _build_followed(self, request: Request, cutoff: datetime) -> bool:
        if request.state is RequestState.ANALYZING:
            return await self._project_build_followed(request, cutoff)
        if not request.build_id:
            return False
        build = await self._store.get_build(request.queue, request.build_id)
        return build is not None and not build.status.terminal and build.updated_at > cutoff

    async def _project_build_followed(self, request: Request, cutoff: datetime) -> bool:
        """An ``analyzing`` Request waiting on a project build that buildsignal still
        polls is moving, however long that build takes."""
        config = self._queues.queue(request.queue)
        for project in config.project_names:
            build = await self._store.latest_project_build(request.queue, request.id, project)
            if build is not None and not build.status.terminal and build.updated_at > cutoff:
                return True
        return False
