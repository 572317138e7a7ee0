"""sweeper: repair, from storage, what lost messages left unfinished.

Messages can be lost with the broker (the embedded broker keeps nothing across
a restart); storage cannot. One pass runs three repairs
(``stovepipe.stages.repairs``), each on its own kind of lost work:

1. :class:`~stovepipe.stages.repairs.UnfinishedRequestRedriver` re-drives
   non-terminal Requests that stopped moving;
2. :class:`~stovepipe.stages.repairs.LostVerdictRerecorder` re-records settled
   Requests whose verdict never landed;
3. :class:`~stovepipe.stages.repairs.PromotionRefRepair` promotes the bookmark
   where the promotion ref is known to lag behind it.

A repair that fails with a classified error (``stovepipe.failures``) is logged
and the pass goes on with the next one, so one broken Queue or an extension
outage cannot starve the others; an unclassified exception is a bug and
propagates to the worker, which logs it and sweeps again on its next tick.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from stovepipe.failures import KNOWN_FAILURES, Verdict, classify, short_reason
from stovepipe.stages.base import StageBase
from stovepipe.stages.ports import Clock, Extensions, Publisher, QueueDirectory
from stovepipe.stages.repairs import (
    LostVerdictRerecorder,
    PromotionRefRepair,
    Repair,
    SweepPass,
    UnfinishedRequestRedriver,
)
from stovepipe.storage import Store

log = logging.getLogger(__name__)


class StaleRequestSweeper(StageBase):
    """One pass of every repair; safe to run in several replicas at once."""

    def __init__(
        self,
        store: Store,
        queues: QueueDirectory,
        extensions: Extensions,
        publisher: Publisher,
        clock: Clock,
    ) -> None:
        super().__init__(store, queues, extensions, publisher, clock)
        parts = (store, queues, extensions, publisher, clock)
        self.repairs: tuple[Repair, ...] = (
            UnfinishedRequestRedriver(*parts),
            LostVerdictRerecorder(*parts),
            PromotionRefRepair(*parts),
        )

    async def sweep_once(
        self,
        stale_after: timedelta,
        limit: int = 200,
        lookback: timedelta = timedelta(days=1),
    ) -> list[str]:
        """One pass; the ids of the Requests acted on (re-driven, re-recorded, or
        whose commit was promoted again), each once, in the order of the repairs."""
        sweep = SweepPass(
            now=self._clock(), stale_after=stale_after, limit=limit, lookback=lookback
        )
        acted_on: dict[str, None] = {}
        for repair in self.repairs:
            try:
                acted_on.update(dict.fromkeys(await repair.repair(sweep)))
            except KNOWN_FAILURES as exc:
                level = logging.WARNING if classify(exc) is Verdict.RETRYABLE else logging.ERROR
                log.log(level, "%s failed this pass: %s", type(repair).__name__, short_reason(exc))
        return list(acted_on)
