"""buildsignal: follow a build to its end, then settle the Request.

Input: ``BuildSignalMessage`` (build id, request id, queue), keyed by build id.

While the build runs, the same message is handed to the delay machinery and
comes back after the poll interval; the partition is never held. Polls refresh
the Build's ``updated_at`` at least once per heartbeat, a third of the
sweeper's ``stale_after`` (see ``stovepipe.stages.liveness`` for why), which
tells the sweeper the build is still being followed. Once the runner reports a
terminal state: store status and target graph, release the Request's build
slot (a no-op when already released), stamp the Request's outcome (first
writer wins; ``analyzing`` on a Queue with projects, which record settles once
every project has its fact), and publish to record. Each step recognises its own earlier
effect, so redelivery at any point converges on the same end state.

buildsignal frees the slot but does not wake the Queue's waiting head: record
does, once the bookmark reflects this verdict, so the next head is built
incrementally from it. A crash in between leaves a waiting ``accepted`` head
that the sweeper re-drives.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import grpc

from stovepipe.domain import (
    Build,
    BuildStatus,
    Request,
    RequestState,
    TargetOutcome,
    settled_state,
    transition,
)
from stovepipe.extensions.buildrunner.client import BuildReport
from stovepipe.failures import NonRetryable, Retryable
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.liveness import build_heartbeat
from stovepipe.stages.messages import is_stale, record_message
from stovepipe.stages.ports import Clock, DelayedPublisher, Extensions, Publisher, QueueDirectory
from stovepipe.storage import Store, VersionMismatch
from stovepipe.storage.build_logs import BuildLog, bounded
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

_OUTCOME = {
    BuildStatus.SUCCEEDED: RequestState.SUCCEEDED,
    BuildStatus.FAILED: RequestState.FAILED,
    BuildStatus.ERRORED: RequestState.FAILED,
    BuildStatus.CANCELLED: RequestState.CANCELLED,
}


class BuildSignalPoller(StageBase):
    """Polls one build at a cadence and settles its Request when it ends."""

    def __init__(
        self,
        store: Store,
        queues: QueueDirectory,
        extensions: Extensions,
        publisher: Publisher,
        delayed: DelayedPublisher,
        clock: Clock,
        poll_interval_s: float,
        sweeper_stale_after_s: float,
    ) -> None:
        """``sweeper_stale_after_s`` is the sweeper's window; the heartbeat derives from it."""
        super().__init__(store, queues, extensions, publisher, clock)
        self._delayed = delayed
        self._poll_interval_s = poll_interval_s
        self._heartbeat = build_heartbeat(timedelta(seconds=sweeper_stale_after_s))

    async def __call__(self, message: topics_pb2.BuildSignalMessage) -> None:
        if message.pushed:
            await self._on_push(message)
            return
        build = await self._store.get_build(message.queue, message.build_id)
        if build is None:
            raise Retryable(f"build {message.build_id} of {message.queue} not found")
        if build.request_id != message.request_id:
            raise NonRetryable(f"build {build.build_id} belongs to {build.request_id}")
        if build.status.terminal:
            await self._settle(build, message)
            return
        observed = await self._observe(build)
        if observed is not None and observed.status.terminal:
            await self._settle(observed, message, replacing=build)
            return
        if observed is not None:
            await self._write_build(build, observed)
        await self._delayed.publish_after(topics.BUILDSIGNAL, message, self._poll_interval_s)

    async def _on_push(self, message: topics_pb2.BuildSignalMessage) -> None:
        """A runner said the build ended: confirm it with ``Status`` and settle now.

        Only a build this message finds still running is settled here; one already
        terminal in storage was ended by a poll (or an earlier notice), whose own
        message settles it, redelivery included. Nothing in this path retries or
        dead-letters: a notice that cannot be matched, confirmed or settled is
        dropped, and the build's poll chain, which is never stopped by a notice,
        settles it on its slower cadence. So a forged notice costs a ``Status``
        call and changes nothing.
        """
        try:
            build = await self._store.get_build(message.queue, message.build_id)
            if build is None or build.request_id != message.request_id:
                log.info("pushed end of %s matches no build of ours; dropped", message.build_id)
                return
            if build.status.terminal:
                return
            observed = await self._observe(build)
            if observed is None or not observed.status.terminal:
                log.info(
                    "pushed end of %s not confirmed by Status; polling goes on", build.build_id
                )
                return
            await self._settle(observed, message, replacing=build)
        except Exception as exc:
            log.warning(
                "pushed end of %s not settled (%s); its polling settles it",
                message.build_id,
                exc,
            )

    async def _observe(self, build: Build) -> Build | None:
        """The Build as the runner's ``Status`` reports it, to be stored; None when nothing
        needs writing (same state, still running, heartbeat fresh)."""
        config = self._queues.queue(build.queue)
        report = await self._extensions.build_runner(config).status(build.build_id)
        status = BuildStatus(report.state.value)
        now = self._clock()
        fresh = now - build.updated_at < self._heartbeat
        if status == build.status and not status.terminal and fresh:
            return None
        return dataclasses.replace(
            build,
            status=status,
            targets=_target_graph(report),
            message=report.message,
            version=build.version + 1,
            updated_at=now,
        )

    async def _write_build(self, old: Build, new: Build) -> Build:
        try:
            return await self._store.update_build(old, new)
        except VersionMismatch as exc:
            raise Retryable(f"build {old.build_id} changed concurrently") from exc

    async def _settle(
        self,
        build: Build,
        message: topics_pb2.BuildSignalMessage,
        *,
        replacing: Build | None = None,
    ) -> None:
        """Store the ended build (when ``replacing`` is the row it was read as), free the
        slot and stamp the outcome in one transaction; then keep the failed targets'
        logs and hand the Request to record."""
        async with self._store.unit():
            if replacing is not None:
                await self._write_build(replacing, build)
            request = await self._store.get_request(build.request_id)
            if request is None:
                raise Retryable(f"{build.request_id} not found (not yet visible?)")
            if message.scope.project:
                # A project-scoped build (analyze asked for it after the Request
                # settled): no slot, no outcome to stamp; record derives the fact.
                stale = is_stale(message.request_attempt, request)
            elif is_stale(message.request_attempt, request) or request.build_id != build.build_id:
                # The build of an earlier attempt: its slot, outcome and verdict are
                # no business of the attempt now running (a re-validation).
                log.info(
                    "%s: build %s is not its current build; ignored", request.id, build.build_id
                )
                return
            elif await self._settled_already(request):
                return
            else:
                await queue_ops.release_slot(self._store, request.queue, request.id, self._clock)
                request = await self._stamp_outcome(request, build)
        if message.scope.project:
            if not stale:
                await self._publisher.publish(
                    topics.RECORD, record_message(request, message.scope.project)
                )
            return
        await self._keep_failed_logs(request, build)
        await self._publisher.publish(topics.RECORD, record_message(request, message.scope.project))

    async def _settled_already(self, request: Request) -> bool:
        """Whether this build's end was settled and recorded by another message (a pushed
        end before this poll, or the other way round): the outcome is stamped and the
        fact of this attempt exists. Then nothing is left to do, and doing it again would
        only record twice. Anything short of that (a crash between the stamp and the
        record) is settled again, every step recognising its own effect."""
        if request.state not in (RequestState.SUCCEEDED, RequestState.FAILED):
            return False
        if self._queues.queue(request.queue).projects:
            return False  # the whole-repository fact waits for the projects' facts
        fact = await self._store.get_fact_of_attempt(
            request.queue, request.uri, "", request.attempt
        )
        return fact is not None

    async def _keep_failed_logs(self, request: Request, build: Build) -> None:
        """Copy the output of the targets that failed into storage (redacted, bounded),
        so ``stovepipe logs`` can explain the verdict after the runner has moved on.
        A log the runner cannot give is skipped: a verdict never waits for one."""
        culprits = [t for t in build.targets if t.state in _FAILED_TARGET_STATES]
        if not culprits:
            return
        runner = self._extensions.build_runner(self._queues.queue(build.queue))
        for target in culprits[:_LOGS_KEPT]:
            try:
                chunk = await runner.get_log(build.build_id, target.name)
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "%s: the log of target %s was not kept: %s",
                    request.id,
                    target.name,
                    exc.code().name,
                )
                continue
            content, truncated = bounded(chunk.content, chunk.truncated)
            await self._store.put_build_log(
                BuildLog(
                    queue=request.queue,
                    request_id=request.id,
                    attempt=request.attempt,
                    target=target.name,
                    build_id=build.build_id,
                    content=content,
                    truncated=truncated,
                    created_at=self._clock(),
                )
            )

    async def _stamp_outcome(self, request: Request, build: Build) -> Request:
        has_projects = bool(self._queues.queue(request.queue).projects)
        while request.state in (RequestState.ACCEPTED, RequestState.PROCESSING):
            outcome = settled_state(_OUTCOME[build.status], has_projects=has_projects)
            reason = f"build {build.build_id} {build.status}"
            if culprits := failed_targets(build):
                reason += f": {culprits}"
            if build.message:
                reason += f": {build.message}"
            try:
                return await self._store.update_request(
                    request,
                    transition(request, outcome, now=self._clock(), reason=reason),
                )
            except VersionMismatch:
                reloaded = await self._store.get_request(request.id)
                if reloaded is None:
                    raise Retryable(f"{request.id} vanished while being settled") from None
                request = reloaded
        return request


_FAILED_TARGET_STATES = {"failed": "exit {code}", "timed_out": "timed out"}
_NAMED_AT_MOST = 5
_LOGS_KEPT = 20
"""Logs copied per failed build: enough for any real failure, bounded for a broken one."""


def failed_targets(build: Build) -> str:
    """The targets that made a build fail, e.g. ``target unit failed (exit 2)``, so a
    red verdict says what broke without a trip to the runner's logs."""
    culprits = [
        f"{t.name} ({_FAILED_TARGET_STATES[t.state].format(code=t.exit_code)})"
        for t in build.targets
        if t.state in _FAILED_TARGET_STATES
    ]
    if not culprits:
        return ""
    shown = ", ".join(culprits[:_NAMED_AT_MOST])
    more = f" and {len(culprits) - _NAMED_AT_MOST} more" if len(culprits) > _NAMED_AT_MOST else ""
    noun = "target" if len(culprits) == 1 else "targets"
    return f"{noun} {shown}{more} failed"


def _target_graph(report: BuildReport) -> tuple[TargetOutcome, ...]:
    return tuple(
        TargetOutcome(
            name=t.name,
            state=t.state.value,
            exit_code=t.exit_code,
            duration_seconds=t.duration_seconds,
            paths=tuple(t.paths),
        )
        for t in report.targets
    )
