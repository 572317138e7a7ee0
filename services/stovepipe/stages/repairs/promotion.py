"""Promote the bookmark again where the promotion ref lags behind it.

record moves the bookmark, then promotes the ref, then notes on the Queue where
the ref is (``promoted_ref``/``promoted_uri``). If the promotion was lost (the
call failed for good, or the record message went with the broker after the
bookmark moved) the note lags behind the bookmark. This repair promotes only
those Queues, and only once they have been idle for ``stale_after`` (so a
record still under way is not raced); a Queue whose ref is in place costs no
call at all.

Why a note rather than asking SourceControl where the ref is: a URI is minted
for one commit *on one ref* and core may only compare URIs for equality, so a
URI read from the promotion ref cannot be compared with the bookmark without a
new extension call; and asking would still cost an RPC per Queue per pass. The
note is durable, shared by every sweeper replica, and written by the same code
that promotes. Its blind spot: a ref moved by hand outside Stovepipe is not
noticed until the next green verdict promotes again.

Failures are classified per Queue (``stovepipe.failures``): a retryable one
(SourceControl unavailable) waits for the next pass, a permanent one (the ref
refused, the repository gone) is logged as an error for an operator, and
neither keeps the other Queues from being repaired. Anything unclassified is a
bug and propagates.
"""

from __future__ import annotations

import logging

from stovepipe.config import QueueConfig, UnknownQueue
from stovepipe.domain import QueueState
from stovepipe.failures import KNOWN_FAILURES, Verdict, classify, short_reason
from stovepipe.stages import queue_ops
from stovepipe.stages.base import StageBase
from stovepipe.stages.ports import queue_source
from stovepipe.stages.repairs.base import SweepPass

log = logging.getLogger(__name__)


class PromotionRefRepair(StageBase):
    """Promotes the bookmark of each idle Queue whose promotion ref is known to lag."""

    async def repair(self, sweep: SweepPass) -> list[str]:
        promoted: list[str] = []
        for queue in await self._store.list_queues():
            if queue.updated_at >= sweep.cutoff or not queue.last_green_request_id:
                continue
            config = self._config(queue)
            ref = config.promotion_ref if config is not None else None
            if config is None or not ref or not queue.promotion_lags(ref):
                continue
            try:
                await self._promote(queue, config, ref)
            except KNOWN_FAILURES as exc:
                _log_failure(queue, ref, exc)
                continue
            promoted.append(queue.last_green_request_id)
        return promoted

    def _config(self, queue: QueueState) -> QueueConfig | None:
        try:
            return self._queues.queue(queue.name)
        except UnknownQueue:
            return None  # a Queue removed from the configuration keeps its data, not its ref

    async def _promote(self, queue: QueueState, config: QueueConfig, ref: str) -> None:
        uri = queue.last_green_uri or ""
        result = await self._extensions.source_control(config).promote(
            queue_source(config), uri, ref
        )
        await queue_ops.note_promoted(self._store, queue.name, ref, uri, self._clock)
        if result.moved:
            log.warning("%s: %s was behind the bookmark; moved to %s", queue.name, ref, uri)


def _log_failure(queue: QueueState, ref: str, exc: BaseException) -> None:
    if classify(exc) is Verdict.RETRYABLE:
        log.warning(
            "%s: promoting %s failed; the next pass tries again: %s",
            queue.name,
            ref,
            short_reason(exc),
        )
    else:
        log.error(
            "%s: promoting %s was refused; an operator must look: %s",
            queue.name,
            ref,
            short_reason(exc),
        )
