"""build: trigger the runner for an admitted Request and persist the Build.

Input: ``BuildMessage`` (request id, queue, scope), keyed by request id.

The runner is asked with an idempotency key derived from the Request, its
attempt and the scope, so a redelivery after a crash between the trigger and
the writes gets the same build back instead of starting a second one.

A project-scoped build (Phase 2, asked for by analyze) comes after the
Request settled: it runs only the project's targets, in full at the head, takes
no build slot and is not attached to the Request; record finds it by
``(request, project)``.
"""

from __future__ import annotations

import contextlib

from stovepipe.domain import Build, BuildStatus, Request, RequestState, with_build
from stovepipe.extensions.buildrunner.client import TargetSpec, TriggerSpec
from stovepipe.failures import NonRetryable, Retryable
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import is_stale
from stovepipe.stages.ports import queue_source
from stovepipe.storage import AlreadyExists, VersionMismatch
from stovepipe.v1 import topics_pb2, types_pb2


def idempotency_key(request: Request, project: str) -> str:
    return f"{request.id}#{request.attempt}#{project or '-'}"


class BuildTrigger(StageBase):
    """Starts exactly one build per (Request attempt, scope) and hands it to buildsignal."""

    async def __call__(self, message: topics_pb2.BuildMessage) -> None:
        request = await self._store.get_request(message.request_id)
        if request is None:
            raise Retryable(f"{message.request_id} not found (not yet visible?)")
        if is_stale(message.request_attempt, request):
            return
        if message.scope.project:
            await self._build_project(request, message.scope.project)
            return
        if request.terminal or request.state is RequestState.ANALYZING:
            return  # its whole-repository build has ended (a redelivery)
        if request.state is not RequestState.PROCESSING:
            raise NonRetryable(f"{request.id} is {request.state}; only admitted requests build")
        project = message.scope.project
        build_id = request.build_id or await self._trigger(request, project)
        try:
            async with self._store.unit():  # the Build and the Request naming it together
                await self._persist_build(request, build_id, project)
                if request.build_id != build_id:
                    request = await self._store.update_request(
                        request, with_build(request, build_id, now=self._clock())
                    )
        except VersionMismatch as exc:
            raise Retryable(f"{request.id} changed while attaching {build_id}") from exc
        await self._publisher.publish(
            topics.BUILDSIGNAL,
            topics_pb2.BuildSignalMessage(
                build_id=build_id,
                request_id=request.id,
                queue=request.queue,
                scope=types_pb2.Scope(project=project),
                request_attempt=request.attempt,
            ),
        )

    async def _build_project(self, request: Request, project: str) -> None:
        if request.state not in (
            RequestState.ANALYZING,
            RequestState.SUCCEEDED,
            RequestState.FAILED,
        ):
            return  # superseded or cancelled: no verdict to refine
        if await self._store.get_fact_of_attempt(
            request.queue, request.uri, project, request.attempt
        ):
            return  # recorded already (a redelivery after record)
        build_id = await self._trigger(request, project)
        await self._persist_build(request, build_id, project)
        await self._publisher.publish(
            topics.BUILDSIGNAL,
            topics_pb2.BuildSignalMessage(
                build_id=build_id,
                request_id=request.id,
                queue=request.queue,
                scope=types_pb2.Scope(project=project),
                request_attempt=request.attempt,
            ),
        )

    async def _trigger(self, request: Request, project: str) -> str:
        config = self._queues.queue(request.queue)
        runner = self._extensions.build_runner(config)
        scoped = config.project(project) if project else None
        if project and scoped is None:
            raise NonRetryable(f"queue {request.queue} has no project {project!r}")
        spec = TriggerSpec(
            source=queue_source(config),
            base_uri="" if project else (request.base_uri or ""),
            head_uri=request.uri,
            project=project,
            targets=tuple(
                TargetSpec(
                    name=t.name,
                    command=t.command,
                    paths=tuple(t.paths),
                    timeout_seconds=float(t.timeout_seconds),
                    network=t.network,
                )
                for t in config.build.targets
                if scoped is None or scoped.owns_target(t.name)
            ),
            idempotency_key=idempotency_key(request, project),
            # described at ingest: the runner need not ask SourceControl again
            head_revision=request.head_revision,
        )
        return await runner.trigger(spec)

    async def _persist_build(self, request: Request, build_id: str, project: str) -> None:
        now = self._clock()
        with contextlib.suppress(AlreadyExists):
            await self._store.create_build(
                Build(
                    queue=request.queue,
                    build_id=build_id,
                    request_id=request.id,
                    project=project,
                    status=BuildStatus.PENDING,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
