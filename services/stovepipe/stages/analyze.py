"""analyze: refine a settled Request's whole-repository build into one verdict per project.

Input: ``AnalyzeMessage`` (request id, queue, attempt), keyed by request id;
published by record when the Queue has projects and a commit still lacks a
project's fact.

For every configured project without a fact of this attempt, in order:

1. **the build answers**: the mapper says every target of the project ran and
   passed (green) or one failed (broken) → a fact with ``origin = build``;
2. **inherit**: the project is unaffected since its own last green commit (no
   changed file under its paths, none of its targets ran, per the mapper, over
   the diff from that commit) and that commit is an ancestor of this one →
   a green fact with ``origin = inherited`` naming it (off with
   ``inherit_unaffected: false``);
3. otherwise a **project-scoped build**: a ``BuildMessage`` with the project as
   scope goes through build → buildsignal → record like the whole-repository one.

Facts written here are handed to record (``RecordMessage`` with the project),
which owns bookmarks, promotion refs and events. When no project is missing
any more, record gets the whole-repository message and writes the weighted
degree. Every step is create-only or a re-publish, so a redelivery (or a
kill -9 mid-way) converges: an existing fact is adopted, and a project build is
triggered with the same idempotency key and so is the same build.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

from stovepipe.config import ProjectConfig, QueueConfig
from stovepipe.domain import (
    BROKEN,
    GREEN,
    FactOrigin,
    Request,
    RequestState,
    ValidationFact,
)
from stovepipe.extensions.projectmapper import (
    MapInput,
    ProjectImpact,
    ProjectSpec,
    ProjectVerdict,
    TargetResult,
)
from stovepipe.extensions.sourcecontrol import Ancestry
from stovepipe.failures import Retryable
from stovepipe.stages import topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import build_message, is_stale, record_message
from stovepipe.stages.ports import queue_source
from stovepipe.storage import AlreadyExists
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)


_ANALYZABLE = (RequestState.ANALYZING, RequestState.SUCCEEDED, RequestState.FAILED)
"""``analyzing`` normally; settled states for Requests that ended before Phase 2's
in-flight state existed (their whole fact was still deferred to the projects)."""


def project_spec(project: ProjectConfig) -> ProjectSpec:
    return ProjectSpec(
        name=project.name,
        paths=tuple(project.paths),
        target_patterns=tuple(project.targets),
        weight=project.weight,
    )


class ProjectAnalyzer(StageBase):
    """Gives every project of a settled Request a fact, or a project-scoped build that will."""

    async def __call__(self, message: topics_pb2.AnalyzeMessage) -> None:
        request = await self._store.get_request(message.request_id)
        if request is None:
            raise Retryable(f"{message.request_id} not found (not yet visible?)")
        if is_stale(message.request_attempt, request):
            return
        if request.state in (RequestState.ACCEPTED, RequestState.PROCESSING):
            raise Retryable(f"{request.id} is still {request.state}; nothing to analyze yet")
        if request.state not in _ANALYZABLE:
            return
        config = self._queues.queue(request.queue)
        missing = [
            p
            for p in config.projects
            if await self._store.get_fact_of_attempt(
                request.queue, request.uri, p.name, request.attempt
            )
            is None
        ]
        if not missing:
            await self._publisher.publish(topics.RECORD, record_message(request))
            return
        targets = await self._target_graph(request)
        for base, group in (await self._bases(request, config, missing)).items():
            changed = await self._changed_files(config, base, request.uri)
            impacts = await self._extensions.project_mapper(config).map(
                MapInput(
                    queue=request.queue,
                    targets=targets,
                    changed_files=changed,
                    projects=tuple(project_spec(p) for p in group),
                )
            )
            by_name = {i.project: i for i in impacts}
            for project in group:
                impact = by_name.get(project.name)
                if impact is None:
                    raise Retryable(f"the project mapper left out project {project.name!r}")
                await self._settle(request, config, project, impact, base)

    async def _target_graph(self, request: Request) -> tuple[TargetResult, ...]:
        if not request.build_id:
            return ()
        build = await self._store.get_build(request.queue, request.build_id)
        if build is None:
            return ()
        return tuple(TargetResult(name=t.name, state=t.state) for t in build.targets)

    async def _bases(
        self, request: Request, config: QueueConfig, projects: list[ProjectConfig]
    ) -> dict[str, list[ProjectConfig]]:
        """Projects grouped by the commit they are compared against: their own last green
        when it can be inherited from, else "" (nothing to inherit)."""
        groups: dict[str, list[ProjectConfig]] = defaultdict(list)
        ancestry: dict[str, bool] = {}  # projects green at one commit cost one call
        for project in projects:
            base = ""
            if config.inherit_unaffected:
                bookmark = await self._store.get_project_bookmark(request.queue, project.name)
                green = bookmark.last_green_uri if bookmark is not None else None
                if green and green != request.uri:
                    if green not in ancestry:
                        answer = await self._extensions.source_control(config).is_ancestor(
                            queue_source(config), green, request.uri
                        )
                        ancestry[green] = answer is Ancestry.ANCESTOR
                    if ancestry[green]:
                        base = green
            groups[base].append(project)
        return groups

    async def _changed_files(self, config: QueueConfig, base: str, head: str) -> tuple[str, ...]:
        if not base:
            return ()
        files = await self._extensions.source_control(config).changed_files(
            queue_source(config), base, head
        )
        return tuple(files)

    async def _settle(
        self,
        request: Request,
        config: QueueConfig,
        project: ProjectConfig,
        impact: ProjectImpact,
        base: str,
    ) -> None:
        if impact.verdict is ProjectVerdict.GREEN:
            await self._write(request, project, GREEN, FactOrigin.BUILD, _targets(impact))
        elif impact.verdict is ProjectVerdict.BROKEN:
            await self._write(request, project, BROKEN, FactOrigin.BUILD, _targets(impact))
        elif base and not impact.affected:
            await self._write(
                request,
                project,
                GREEN,
                FactOrigin.INHERITED,
                f"unaffected since {base}",
                inherited_from=base,
            )
        else:
            log.info("%s: project %s needs its own build", request.id, project.name)
            await self._publisher.publish(topics.BUILD, build_message(request, project.name))

    async def _write(
        self,
        request: Request,
        project: ProjectConfig,
        degree: float,
        origin: FactOrigin,
        reason: str,
        inherited_from: str = "",
    ) -> None:
        # On a redelivery the fact stands; record still gets its message.
        with contextlib.suppress(AlreadyExists):
            await self._store.create_fact(
                ValidationFact(
                    queue=request.queue,
                    uri=request.uri,
                    project=project.name,
                    degree=degree,
                    request_id=request.id,
                    origin=origin,
                    created_at=self._clock(),
                    reason=reason[:500],
                    attempt=request.attempt,
                    inherited_from_uri=inherited_from,
                )
            )
        await self._publisher.publish(topics.RECORD, record_message(request, project.name))


def _targets(impact: ProjectImpact) -> str:
    return f"from the build's targets: {', '.join(impact.targets)}"
