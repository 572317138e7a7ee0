"""reconcile: dead letters fail closed.

Input: the original record of any stage topic, from ``<topic>.dlq`` (retries
exhausted, or a permanent error). The Request it names must not stay
``accepted``/``processing`` forever holding a build slot, and must not look
green: the reconciler releases the slot, drives the Request to ``failed`` by
CAS with the dead-letter reason, wakes the Queue's latest head, and asks record
to write the verdict — which, with no failed build behind it, is a broken fact
with ``origin = fail_closed``. A Request that already ended is only re-recorded.

Per project (Phase 2): a dead letter on a project-scoped path (build,
buildsignal or record with a project scope) fails only that project closed: a
broken fact with ``origin = fail_closed`` for it, then record for the project.
A dead-lettered ``AnalyzeMessage`` does the same for every project still
without a fact. Other projects keep their verdicts. On a Queue with projects a
whole-repository letter does not end the Request either: it goes ``analyzing``
like a finished build (the projects get their facts or project builds), and any
whole-repository record letter about an ``analyzing`` Request fails its
missing projects closed, so the Request ends once record has every project's
fact (other whole-repository letters about it re-send record, which re-drives
analyze).
"""

from __future__ import annotations

import logging

from google.protobuf.message import Message

from stovepipe.domain import (
    BROKEN,
    FactOrigin,
    Request,
    RequestState,
    ValidationFact,
    settled_state,
    transition,
)
from stovepipe.failures import Retryable
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import is_stale, record_message, wake_queue
from stovepipe.storage import AlreadyExists, VersionMismatch
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

_SETTLED = (RequestState.FAILED, RequestState.SUCCEEDED, RequestState.ANALYZING)


class DeadLetterReconciler(StageBase):
    """Settles the Request named by a dead-lettered message as failed (fail closed)."""

    async def reconcile(self, message: Message, reason: str) -> None:
        request_id = str(getattr(message, "request_id", ""))
        queue = str(getattr(message, "queue", ""))
        request = await self._store.get_request(request_id)
        if request is None:
            log.error(
                "dead letter names unknown request %r (%s); nothing to settle", request_id, reason
            )
            return
        if queue and queue != request.queue:
            log.error("dead letter names %s under queue %r; not settling it", request.id, queue)
            return
        if is_stale(int(getattr(message, "request_attempt", 0)), request):
            return  # an earlier attempt's letter must not fail the re-validation now running
        scope = getattr(message, "scope", None)
        project = str(getattr(scope, "project", "")) if scope is not None else ""
        per_project = project or isinstance(message, topics_pb2.AnalyzeMessage)
        from_record = isinstance(message, topics_pb2.RecordMessage)
        analyzing = request.state is RequestState.ANALYZING
        if (per_project and request.state in _SETTLED) or (analyzing and from_record):
            # A whole-repository record that cannot hand the Request to analyze is
            # answered per project too: the Request ends once record has them all.
            await self._fail_projects_closed(request, project, reason, from_record)
            return
        if not request.terminal:
            state = await queue_ops.release_slot(
                self._store, request.queue, request.id, self._clock
            )
            request = await self._fail(request, reason)
            await wake_queue(self._store, self._publisher, state, request.id)
        if request.state in _SETTLED:
            await self._publisher.publish(topics.RECORD, record_message(request))

    async def _fail_projects_closed(
        self, request: Request, project: str, reason: str, from_record: bool
    ) -> None:
        """A record dead letter for a project that already has its fact is not sent back
        to record: the same step would fail the same way, round and round."""
        config = self._queues.queue(request.queue)
        names = [project] if project else list(config.project_names)
        for name in names:
            try:
                await self._store.create_fact(
                    ValidationFact(
                        queue=request.queue,
                        uri=request.uri,
                        project=name,
                        degree=BROKEN,
                        request_id=request.id,
                        origin=FactOrigin.FAIL_CLOSED,
                        created_at=self._clock(),
                        reason=f"fail closed: {reason}"[:500],
                        attempt=request.attempt,
                    )
                )
            except AlreadyExists:
                if from_record:
                    log.error(
                        "%s: record of project %s dead-lettered after its fact was written "
                        "(%s); not re-sent",
                        request.id,
                        name,
                        reason,
                    )
                    continue
            await self._publisher.publish(topics.RECORD, record_message(request, name))

    async def _fail(self, request: Request, reason: str) -> Request:
        has_projects = bool(self._queues.queue(request.queue).projects)
        for _ in range(queue_ops.MAX_CAS_ATTEMPTS):
            if request.terminal or request.state is RequestState.ANALYZING:
                return request
            try:
                return await self._store.update_request(
                    request,
                    transition(
                        request,
                        settled_state(RequestState.FAILED, has_projects=has_projects),
                        now=self._clock(),
                        reason=f"fail closed: {reason}"[:500],
                    ),
                )
            except VersionMismatch:
                reloaded = await self._store.get_request(request.id)
                if reloaded is None:
                    break
                request = reloaded
        raise Retryable(f"{request.id}: could not settle the dead letter")
