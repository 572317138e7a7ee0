"""process: coalesce, gate and admit one Request of a Queue.

Input: ``ProcessMessage`` (request id, queue), keyed by queue so one consumer
sees a Queue's messages in order. It is published by ingest, by whoever frees
a build slot (a wake-up for the Queue's latest head) and by the sweeper.

Steps for an ``accepted`` head: coalesce (a newer head supersedes it; older
waiting heads are superseded by it), gate (take a build slot), decide the
strategy, admit. The gate comes before the strategy because the strategy asks
SourceControl about ancestry: a head that meets a closed gate must cost no RPC,
and a SourceControl outage must not turn "wait for a slot" into retries, a dead
letter and a fail-closed verdict.

A Request that meets a closed gate stays ``accepted`` and the delivery is
acknowledged: nothing blocks the partition. A wake-up for the Queue's latest
head follows a slot release once the bookmark reflects the freed Request's
verdict: record publishes it after its bookmark step, the dead-letter
reconciler after failing a Request closed (which never moves the bookmark).
The sweeper re-drives a head whose wake-up was lost.

A re-validation (attempt > 1 of an older head) skips coalescing: it was asked
for by an operator about one commit, so it is neither superseded by newer heads
nor supersedes anything. It still waits for a build slot, and builds in full.

An ``analyzing`` Request (Phase 2: its build ended, projects still wait for
their facts) that the sweeper re-drives goes to record, which hands it to
analyze: the missing project facts and project builds are sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stovepipe.domain import (
    BuildStrategy,
    QueueState,
    Request,
    RequestState,
    is_newer,
    transition,
)
from stovepipe.extensions.sourcecontrol.client import Ancestry
from stovepipe.failures import NonRetryable, Retryable
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import build_message, is_stale, record_message
from stovepipe.stages.ports import queue_source
from stovepipe.storage import VersionMismatch
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admission:
    strategy: BuildStrategy
    base_uri: str | None
    why: str


REVALIDATION = Admission(BuildStrategy.FULL, None, "re-validation: full build")


class RequestAdmitter(StageBase):
    """Moves an ``accepted`` Request to ``superseded`` or ``processing``, or leaves it waiting."""

    async def __call__(self, message: topics_pb2.ProcessMessage) -> None:
        # The Request's read, coalescing and the gate: one transaction. The
        # strategy's RPC and every publish come after it.
        async with self._store.unit():
            request, gated = await self._read_coalesce_gate(message)
        if request is None:
            return
        if request.state is RequestState.PROCESSING:
            await self._publish_build(request)
            return
        if request.state is RequestState.ANALYZING:
            # Re-driven by the sweeper: record hands it to analyze again, which
            # re-sends whatever project fact or project build is still missing.
            await self._publisher.publish(topics.RECORD, record_message(request))
            return
        if gated is None:
            return
        if request.attempt > 1:
            await self._admit(request, REVALIDATION)
            return
        # A slot taken here and not followed by admission (SourceControl down)
        # stays with this accepted head: its redelivery finds it already held,
        # a newer head's coalescing releases it, a dead letter's reconciler too.
        await self._admit(request, await self._decide_strategy(request, gated.last_green_uri))

    async def _read_coalesce_gate(
        self, message: topics_pb2.ProcessMessage
    ) -> tuple[Request | None, QueueState | None]:
        """The Request to act on (``None``: nothing to do) and, for an ``accepted``
        one, the Queue once it holds a build slot (``None``: superseded or waiting)."""
        request = await self._store.get_request(message.request_id)
        if request is None:
            raise Retryable(f"{message.request_id} not found (not yet visible?)")
        if request.queue != message.queue:
            raise NonRetryable(f"{request.id} belongs to {request.queue}, not {message.queue}")
        if request.terminal or is_stale(message.request_attempt, request):
            return None, None
        if request.state in (RequestState.PROCESSING, RequestState.ANALYZING):
            return request, None
        if request.attempt > 1:
            return request, await self._take_slot(request)
        queue = await self._store.ensure_queue(request.queue)
        if queue.latest_request_id and is_newer(queue.latest_request_id, request.id):
            await self._supersede(request, queue.latest_request_id)
            return None, None
        await self._supersede_older_waiting(request)
        return request, await self._take_slot(request)

    async def _take_slot(self, request: Request) -> QueueState | None:
        """The Queue as it is once ``request`` holds a build slot; None when the gate is closed."""
        config = self._queues.queue(request.queue)
        queue = await queue_ops.take_slot(
            self._store, request.queue, request.id, config.max_concurrent, self._clock
        )
        if not queue.holds_slot(request.id):
            log.info("%s waits: %s has no free build slot", request.id, request.queue)
            return None
        return queue

    async def _admit(self, request: Request, admission: Admission) -> None:
        try:
            admitted = await self._store.update_request(
                request,
                transition(
                    request,
                    RequestState.PROCESSING,
                    now=self._clock(),
                    reason=admission.why,
                    build_strategy=admission.strategy,
                    base_uri=admission.base_uri,
                ),
            )
        except VersionMismatch as exc:
            raise Retryable(f"{request.id} changed while being admitted") from exc
        log.info("%s admitted: %s (%s)", admitted.id, admission.strategy, admission.why)
        await self._publish_build(admitted)

    async def _supersede(self, request: Request, latest: str) -> None:
        # Release before the state change: a crash in between leaves an accepted
        # Request without a slot, which the redelivery supersedes; the other
        # order could leave a terminal Request holding a slot forever.
        await queue_ops.release_slot(self._store, request.queue, request.id, self._clock)
        try:
            await self._store.update_request(
                request,
                transition(
                    request,
                    RequestState.SUPERSEDED,
                    now=self._clock(),
                    reason=f"superseded by {latest}",
                ),
            )
        except VersionMismatch as exc:
            raise Retryable(f"{request.id} changed while being superseded") from exc

    async def _supersede_older_waiting(self, latest: Request) -> None:
        """Older heads that met a closed gate before ``latest`` arrived never get a
        wake-up of their own (wake-ups name the latest head), so they are settled here."""
        waiting = await self._store.list_requests(
            latest.queue, states=[RequestState.ACCEPTED], limit=1000
        )
        for older in waiting:
            if older.attempt > 1:
                continue  # a re-validation is never superseded
            if older.id != latest.id and is_newer(latest.id, older.id):
                await self._supersede(older, latest.id)

    async def _decide_strategy(self, request: Request, last_green: str | None) -> Admission:
        if not last_green:
            return Admission(BuildStrategy.FULL, None, "cold start: no green commit yet")
        config = self._queues.queue(request.queue)
        source_control = self._extensions.source_control(config)
        ancestry = await source_control.is_ancestor(queue_source(config), last_green, request.uri)
        if ancestry is Ancestry.ANCESTOR:
            return Admission(BuildStrategy.INCREMENTAL, last_green, "incremental since last green")
        if ancestry is Ancestry.NOT_ANCESTOR:
            return Admission(
                BuildStrategy.FULL, None, "history rewrite: last green not an ancestor"
            )
        return Admission(BuildStrategy.FULL, None, "ancestry of last green unknown")

    async def _publish_build(self, request: Request) -> None:
        await self._publisher.publish(topics.BUILD, build_message(request))
