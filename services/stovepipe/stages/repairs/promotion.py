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

Projects with their own ``promotion_ref`` are mended the same way: the
project's bookmark row notes ``promoted_uri``, and a project idle past the
cutoff whose note differs from its last green is promoted again. (That note
keeps no ref name: a ``promotion_ref`` renamed in the configuration is first
put in place by the project's next green verdict.)

Failures are classified per Queue (``stovepipe.failures``): a retryable one
(SourceControl unavailable) waits for the next pass, a permanent one (the ref
refused, the repository gone) is logged as an error for an operator, and
neither keeps the other Queues from being repaired. Anything unclassified is a
bug and propagates.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from stovepipe.config import QueueConfig, UnknownQueue
from stovepipe.domain import QueueState
from stovepipe.failures import KNOWN_FAILURES, Verdict, classify, short_reason
from stovepipe.stages import project_ops, queue_ops
from stovepipe.stages.base import StageBase
from stovepipe.stages.ports import queue_source
from stovepipe.stages.repairs.base import SweepPass

log = logging.getLogger(__name__)


class PromotionRefRepair(StageBase):
    """Promotes the bookmark of each idle Queue, and of each idle project, whose promotion
    ref is known to lag."""

    async def repair(self, sweep: SweepPass) -> list[str]:
        promoted: list[str] = []
        for queue in await self._store.list_queues():
            config = self._config(queue)
            if config is None:
                continue
            if await self._repair_queue(queue, config, sweep):
                promoted.append(queue.last_green_request_id or "")
            promoted.extend(await self._repair_projects(queue.name, config, sweep))
        return promoted

    async def _repair_queue(self, queue: QueueState, config: QueueConfig, sweep: SweepPass) -> bool:
        ref = config.promotion_ref
        if queue.updated_at >= sweep.cutoff or not queue.last_green_request_id:
            return False
        if not ref or not queue.promotion_lags(ref):
            return False
        uri = queue.last_green_uri or ""
        return await self._promote(
            config,
            uri,
            ref,
            where=ref,
            note=functools.partial(
                queue_ops.note_promoted, self._store, queue.name, ref, uri, self._clock
            ),
        )

    async def _repair_projects(
        self, queue: str, config: QueueConfig, sweep: SweepPass
    ) -> list[str]:
        refs = {p.name: p.promotion_ref for p in config.projects if p.promotion_ref}
        if not refs:
            return []
        promoted: list[str] = []
        for bookmark in await self._store.list_project_bookmarks(queue):
            ref = refs.get(bookmark.project)
            uri = bookmark.last_green_uri
            if ref is None or not uri or bookmark.updated_at >= sweep.cutoff:
                continue
            if bookmark.promoted_uri == uri:
                continue  # in place: no call
            project = bookmark.project
            if await self._promote(
                config,
                uri,
                ref,
                where=f"{ref} (project {project})",
                note=functools.partial(
                    project_ops.note_promoted, self._store, queue, project, uri, self._clock
                ),
            ):
                promoted.append(bookmark.last_green_request_id or "")
        return promoted

    def _config(self, queue: QueueState) -> QueueConfig | None:
        try:
            return self._queues.queue(queue.name)
        except UnknownQueue:
            return None  # a Queue removed from the configuration keeps its data, not its ref

    async def _promote(
        self,
        config: QueueConfig,
        uri: str,
        ref: str,
        *,
        where: str,
        note: Callable[[], Awaitable[object]],
    ) -> bool:
        """Promote ``uri`` to ``ref`` and ``note`` where the ref now is; ``False`` (logged)
        on a classified failure, which the next pass tries again or an operator sees."""
        try:
            result = await self._extensions.source_control(config).promote(
                queue_source(config), uri, ref
            )
            await note()
        except KNOWN_FAILURES as exc:
            _log_failure(config.name, where, exc)
            return False
        if result.moved:
            log.warning("%s: %s was behind the bookmark; moved to %s", config.name, where, uri)
        return True


def _log_failure(queue: str, ref: str, exc: BaseException) -> None:
    if classify(exc) is Verdict.RETRYABLE:
        log.warning(
            "%s: promoting %s failed; the next pass tries again: %s",
            queue,
            ref,
            short_reason(exc),
        )
    else:
        log.error(
            "%s: promoting %s was refused; an operator must look: %s",
            queue,
            ref,
            short_reason(exc),
        )
