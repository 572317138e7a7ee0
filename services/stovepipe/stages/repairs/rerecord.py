"""Re-record verdicts whose record message was lost.

The re-drive repair cannot see these: the Request is already terminal. What
storage shows instead is a settled (succeeded or failed) Request without a
fact, looking back ``lookback`` at most, or a green Request newer than the
bookmark on a Queue that has been idle for ``stale_after``. Republishing the
``RecordMessage`` mends both, since record is recognise-and-skip; it also sends
the wake-up the lost record would have sent.
"""

from __future__ import annotations

import logging

from stovepipe.domain import QueueState, Request, RequestState, is_newer
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import record_message
from stovepipe.stages.repairs.base import SweepPass

log = logging.getLogger(__name__)


class LostVerdictRerecorder(StageBase):
    """Republishes ``RecordMessage`` for settled Requests whose verdict never landed."""

    async def repair(self, sweep: SweepPass) -> list[str]:
        wanted: dict[str, Request] = {
            r.id: r
            for r in await self._store.list_unrecorded_requests(
                sweep.cutoff - sweep.lookback, sweep.cutoff, sweep.limit
            )
        }
        for queue in await self._store.list_queues():
            if queue.updated_at < sweep.cutoff:
                green = await self._green_past_the_bookmark(queue, sweep)
                if green is not None:
                    wanted.setdefault(green.id, green)
        for request in wanted.values():
            await self._publisher.publish(topics.RECORD, record_message(request))
        if wanted:
            log.warning("re-recorded %d verdict(s): %s", len(wanted), ", ".join(wanted))
        return list(wanted)

    async def _green_past_the_bookmark(self, queue: QueueState, sweep: SweepPass) -> Request | None:
        newest = await self._store.list_requests(
            queue.name, states=[RequestState.SUCCEEDED], limit=1
        )
        if (
            newest
            and newest[0].updated_at < sweep.cutoff
            and is_newer(newest[0].id, queue.last_green_request_id)
        ):
            return newest[0]
        return None
