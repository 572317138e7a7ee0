"""record: store the verdict of a settled Request and move the bookmark.

Input: ``RecordMessage`` (request id, queue, scope), keyed by request id.

Steps, each recognise-and-skip on redelivery:

1. map the outcome to a degree (a cancelled Request has none: only step 4);
2. create the fact of this attempt (or adopt the one it already wrote);
3. if green, advance the last-green bookmark by ingest order under CAS;
4. wake the Queue's latest waiting head: buildsignal freed this Request's
   build slot, and waking only now means the woken head is admitted against
   the bookmark this verdict produced (incremental from this commit when it
   is green), not against the one before it;
5. if this Request took the bookmark, read the Queue again and promote the
   ref only while this Request still holds it; then note on the Queue where
   the ref now is (the sweeper's promotion repair reads that note);
6. publish the events of the commit's authoritative fact (``stovepipe.hooks.events``):
   ``verdict.recorded`` and, on a change from the previous verdict, the transition.

With projects configured (Phase 2) record is re-entrant: a message with a
project scope records that project's fact (adopting the one analyze wrote, or
deriving it from the project-scoped build), moves the project's bookmark and
promotion ref and emits the project's event; the whole-repository message
writes nothing until every project has its fact of this attempt (it hands the
Request to analyze instead), and then writes the weighted degree
(``project_ops.whole_repo_degree``), settles the Request (``analyzing`` ->
``succeeded`` when every project is green, else ``failed``) and carries on
with steps 3-6. Until then the Request is visibly in flight: ``analyzing``
counts as in flight in ``queues``, and the sweeper re-drives one that stopped
moving.

A message of an earlier attempt is skipped: after a re-validation only the
current attempt writes. If the record message is lost, the sweeper repairs
both halves: it re-records the verdict, and re-drives the waiting head once
it has stood still for ``stale_after``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stovepipe.config import QueueConfig
from stovepipe.domain import (
    BROKEN,
    GREEN,
    Build,
    BuildStatus,
    FactOrigin,
    QueueState,
    Request,
    RequestId,
    RequestState,
    ValidationFact,
    transition,
)
from stovepipe.failures import NonRetryable, Retryable
from stovepipe.hooks.events import verdict_events
from stovepipe.stages import project_ops, queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import (
    analyze_message,
    is_stale,
    record_message,
    wake_messages,
    wake_queue,
)
from stovepipe.stages.ports import queue_source
from stovepipe.storage import AlreadyExists, VersionMismatch
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A whole-repository verdict as committed, and what is sent about it afterwards."""

    request: Request
    took_bookmark: bool
    wake: list[topics_pb2.ProcessMessage]
    events: list[topics_pb2.HookEvent]


class VerdictRecorder(StageBase):
    """Turns a settled Request into an immutable fact, a bookmark move and an event."""

    async def __call__(self, message: topics_pb2.RecordMessage) -> None:
        # The common path (a whole-repository verdict) reads the Request, writes the
        # fact and the bookmark, and reads what the wake-ups and the events are made
        # of in one transaction; the publishes and Promote come after its commit.
        async with self._store.unit():
            request = await self._recordable(message)
            if request is None:
                return
            config = self._queues.queue(request.queue)
            project = message.scope.project
            whole = request.state is not RequestState.CANCELLED and not project
            verdict = await self._whole_verdict(request, config) if whole else None
            recorded = await self._record(request, verdict) if verdict is not None else None
        if recorded is not None:
            await self._announce(recorded)
            return
        if request.state is RequestState.CANCELLED:
            # No verdict to record, but its build slot was freed: wake the next head.
            queue = await self._store.ensure_queue(request.queue)
            await wake_queue(self._store, self._publisher, queue, request.id)
            return
        if project:
            await self._record_project(request, config, project)
            return
        # Verdict deferred until every project has its fact; the slot is free now.
        queue = await self._store.ensure_queue(request.queue)
        await wake_queue(self._store, self._publisher, queue, request.id)
        await self._publisher.publish(topics.ANALYZE, analyze_message(request))

    async def _recordable(self, message: topics_pb2.RecordMessage) -> Request | None:
        """The Request to record; ``None`` when there is nothing to do."""
        request = await self._store.get_request(message.request_id)
        if request is None:
            raise Retryable(f"{message.request_id} not found (not yet visible?)")
        if request.state is RequestState.SUPERSEDED:
            return None
        if is_stale(message.request_attempt, request):
            return None
        if not request.terminal and request.state is not RequestState.ANALYZING:
            raise Retryable(f"{request.id} is still {request.state}; nothing to record yet")
        return request

    async def _whole_verdict(
        self, request: Request, config: QueueConfig
    ) -> tuple[float, FactOrigin, str] | None:
        """The whole-repository verdict; ``None`` while a project still lacks its fact."""
        if not config.projects:
            return await self._verdict(request)
        facts = await self._project_facts(request, config)
        if facts is None:
            return None
        return project_ops.whole_repo_degree(config.projects, facts)

    async def _record(self, request: Request, verdict: tuple[float, FactOrigin, str]) -> _Recorded:
        """Steps 2-4 and the reads of step 6, inside the caller's transaction."""
        fact = await self._create_or_adopt_fact(request, "", verdict)
        queue = await self._advance_bookmark(request, fact)
        request = await self._settle(request, fact)
        took_bookmark = queue.last_green_request_id == request.id
        wake = await wake_messages(self._store, queue, request.id)
        answer = await self._store.get_fact(request.queue, request.uri, "") or fact
        events = await self._events(request, answer, took_bookmark)
        if answer.request_id == request.id:
            for event in events:
                _add_trigger(event.data, request)
        return _Recorded(request, took_bookmark, wake, events)

    async def _announce(self, recorded: _Recorded) -> None:
        """After the commit: wake the next heads, promote, publish the events."""
        for wake in recorded.wake:
            await self._publisher.publish(topics.PROCESS, wake)
        if recorded.took_bookmark:
            await self._promote(recorded.request)
        for event in recorded.events:
            await self._publisher.publish(topics.HOOK, event)

    async def _settle(self, request: Request, fact: ValidationFact) -> Request:
        """End an ``analyzing`` Request once its whole-repository fact is durable:
        succeeded when every project is green, failed otherwise. Until this write
        the Request is visibly in flight (and the sweeper re-drives it if stuck)."""
        for _ in range(queue_ops.MAX_CAS_ATTEMPTS):
            if request.state is not RequestState.ANALYZING:
                return request
            outcome = RequestState.SUCCEEDED if fact.green else RequestState.FAILED
            reason = request.reason
            if fact.reason and fact.reason not in reason:
                reason = f"{reason}; {fact.reason}" if reason else fact.reason
            try:
                return await self._store.update_request(
                    request, transition(request, outcome, now=self._clock(), reason=reason)
                )
            except VersionMismatch:
                reloaded = await self._store.get_request(request.id)
                if reloaded is None:
                    break
                request = reloaded
        raise Retryable(f"{request.id}: could not settle it after its verdict")

    async def _events(
        self, request: Request, fact: ValidationFact, took_bookmark: bool
    ) -> list[topics_pb2.HookEvent]:
        """``verdict.recorded`` and, when the verdict differs from the Queue's previous one
        in ingest order, the transition event."""
        number = RequestId.parse(fact.request_id).n
        previous = await self._store.previous_fact(fact.queue, fact.project, number)
        queue = await self._store.ensure_queue(fact.queue)
        return verdict_events(
            fact,
            previous,
            took_bookmark=took_bookmark,
            last_green_uri=queue.last_green_uri or "",
            strategy=request.build_strategy.value if request.build_strategy else "",
            build_link=request.build_id or "",
            now=self._clock(),
        )

    async def _advance_bookmark(self, request: Request, fact: ValidationFact) -> QueueState:
        """The Queue after moving the bookmark to this Request's commit if it is green and newer."""
        if fact.green and fact.request_id == request.id:
            return await queue_ops.advance_bookmark(
                self._store, request.queue, request.id, request.uri, self._clock
            )
        return await self._store.ensure_queue(request.queue)

    async def _project_facts(
        self, request: Request, config: QueueConfig
    ) -> list[ValidationFact] | None:
        """Every project's fact of this attempt, or ``None`` while one is missing."""
        facts = []
        for p in config.projects:
            fact = await self._store.get_fact_of_attempt(
                request.queue, request.uri, p.name, request.attempt
            )
            if fact is None:
                return None
            facts.append(fact)
        return facts

    async def _record_project(self, request: Request, config: QueueConfig, project: str) -> None:
        spec = config.project(project)
        if spec is None:
            raise NonRetryable(f"{request.id}: queue {request.queue} has no project {project!r}")
        fact = await self._store.get_fact_of_attempt(
            request.queue, request.uri, project, request.attempt
        ) or await self._create_or_adopt_fact(
            request, project, await self._project_build_verdict(request, project)
        )
        took = False
        if fact.green and fact.request_id == request.id:
            bookmark = await project_ops.advance_bookmark(
                self._store, request.queue, project, request.id, request.uri, self._clock
            )
            took = bookmark.last_green_request_id == request.id
        answer = await self._store.get_fact(request.queue, request.uri, project) or fact
        for event in await self._events(request, answer, took):
            await self._publisher.publish(topics.HOOK, event)
        if await self._project_facts(request, config) is not None:
            await self._publisher.publish(topics.RECORD, record_message(request))
        # Last: a SourceControl outage must not hold back the event or the whole verdict.
        if took and spec.promotion_ref:
            await self._promote_project(request, config, project, spec.promotion_ref)

    async def _project_build_verdict(
        self, request: Request, project: str
    ) -> tuple[float, FactOrigin, str]:
        build = await self._store.latest_project_build(request.queue, request.id, project)
        if build is None or not build.status.terminal:
            raise Retryable(f"{request.id}: project {project} has no finished build yet")
        reason = f"project build {build.build_id} {build.status}"
        if build.status is BuildStatus.SUCCEEDED:
            return GREEN, FactOrigin.BUILD, reason
        if build.status is BuildStatus.FAILED:
            return BROKEN, FactOrigin.BUILD, reason
        return BROKEN, FactOrigin.FAIL_CLOSED, reason

    async def _promote_project(
        self, request: Request, config: QueueConfig, project: str, ref: str
    ) -> None:
        bookmark = await self._store.get_project_bookmark(request.queue, project)
        if bookmark is None or bookmark.last_green_request_id != request.id:
            return  # a newer Request took the project's bookmark and promotes its own
        await self._extensions.source_control(config).promote(
            queue_source(config), request.uri, ref
        )
        await project_ops.note_promoted(
            self._store, request.queue, project, request.uri, self._clock
        )

    async def _create_or_adopt_fact(
        self, request: Request, project: str, verdict: tuple[float, FactOrigin, str]
    ) -> ValidationFact:
        degree, origin, reason = verdict
        try:
            return await self._store.create_fact(
                ValidationFact(
                    queue=request.queue,
                    uri=request.uri,
                    project=project,
                    degree=degree,
                    request_id=request.id,
                    origin=origin,
                    created_at=self._clock(),
                    reason=reason,
                    attempt=request.attempt,
                    upstream_greens=request.upstream_greens,
                )
            )
        except AlreadyExists as exc:
            existing: ValidationFact = exc.existing
            if existing.request_id != request.id:
                log.warning(
                    "%s: %s already has a fact from %s; it stands",
                    request.id,
                    request.uri,
                    existing.request_id,
                )
            return existing

    async def _verdict(self, request: Request) -> tuple[float, FactOrigin, str]:
        if request.state is RequestState.SUCCEEDED:
            return GREEN, FactOrigin.BUILD, request.reason
        if request.state is RequestState.ANALYZING:
            # Its Queue lost its projects while it was analyzed: the build answers.
            build = await self._build_of(request)
            if build is not None and build.status is BuildStatus.SUCCEEDED:
                return GREEN, FactOrigin.BUILD, request.reason
        elif request.state is not RequestState.FAILED:
            raise NonRetryable(f"{request.id} ended {request.state}; it has no verdict")
        build = await self._build_of(request)
        if build is not None and build.status is BuildStatus.FAILED:
            return BROKEN, FactOrigin.BUILD, request.reason
        return BROKEN, FactOrigin.FAIL_CLOSED, request.reason

    async def _build_of(self, request: Request) -> Build | None:
        if not request.build_id:
            return None
        return await self._store.get_build(request.queue, request.build_id)

    async def _promote(self, request: Request) -> None:
        config = self._queues.queue(request.queue)
        if not config.promotion_ref:
            return
        # Between taking the bookmark and this call a newer Request may have taken
        # it and promoted its own commit. Promoting ours then would move the ref
        # back, along history or, after a rewrite, off it; so ask again.
        queue = await self._store.ensure_queue(request.queue)
        if queue.last_green_request_id != request.id:
            log.info(
                "%s: %s now holds the bookmark; %s is left to it",
                request.id,
                queue.last_green_request_id,
                config.promotion_ref,
            )
            return
        result = await self._extensions.source_control(config).promote(
            queue_source(config), request.uri, config.promotion_ref
        )
        log.info(
            "%s: %s -> %s (moved=%s)", request.id, config.promotion_ref, request.uri, result.moved
        )
        await queue_ops.note_promoted(
            self._store, request.queue, config.promotion_ref, request.uri, self._clock
        )


def _add_trigger(data: topics_pb2.GreennessEventData, request: Request) -> None:
    """Say in the event why the Request that wrote the fact exists."""
    data.trigger = request.trigger
    data.trigger_details.update(dict(request.trigger_details))
    data.upstream_greens.extend(
        types_pb2.UpstreamGreen(queue=g.queue, uri=g.uri, request_id=g.request_id)
        for g in request.upstream_greens
    )
