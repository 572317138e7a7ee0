"""revalidate: an operator asks for a commit to be validated again.

Runs inside the API server (``Revalidate`` RPC, admin role), not on a topic.
A re-validation is a new *attempt* of the commit's existing Request: the
Request goes ``failed -> accepted`` with ``attempt + 1`` and is published to
process, which admits it without coalescing and builds it in full. The earlier
attempt's fact stays; record adds the new attempt's fact beside it and reads
pick the authoritative one (``stovepipe.domain.fact.outranks``).

What may be re-validated follows from what each verdict means:

* ``fail_closed``: Stovepipe could not find out. Always allowed.
* broken from a real build: allowed only with ``flaky``, because re-running a
  real failure until it passes is how flaky tests hide; the caller says so.
* green: never. A gate may already have shipped it; green is final.
* superseded / cancelled / still running: there is no verdict to question.

Per project (Phase 2, ``project`` set): the same rules on that project's own
fact. The new attempt skips admission and the whole-repository build: the
Request goes ``failed -> analyzing``, the other projects' facts are carried into
the new attempt unchanged, and analyze answers the project again without the
questioned build (inherited when unaffected since its last green, else a
project-scoped build). record then writes the new whole-repository fact and
settles the Request.

Asking again while the new attempt is in flight returns it unchanged, so a
retried call (or two operators) never starts a second one. A crash after the
state change and before the publish leaves an ``accepted`` Request that the
sweeper re-drives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from stovepipe.domain import (
    FactOrigin,
    NotFound,
    Refused,
    Request,
    RequestState,
    start_new_attempt,
    start_project_attempt,
    validate_queue_name,
)
from stovepipe.domain.errors import InvalidInput
from stovepipe.redaction import redact_line
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import analyze_message, process_message
from stovepipe.storage import AlreadyExists, VersionMismatch

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Revalidation:
    request: Request
    already_in_flight: bool


class Revalidator(StageBase):
    """Starts a new attempt for a commit whose verdict may be wrong."""

    async def revalidate(
        self, queue: str, uri: str, *, flaky: bool = False, reason: str = "", project: str = ""
    ) -> Revalidation:
        validate_queue_name(queue)
        config = self._queues.queue(queue)
        if project and config.project(project) is None:
            configured = ", ".join(config.project_names) or "none"
            raise InvalidInput(
                f"queue {queue} has no project {project!r}; configured projects: {configured}"
            )
        if not uri:
            raise InvalidInput("uri is empty; pass the commit URI (see `stovepipe request`)")
        for _ in range(queue_ops.MAX_CAS_ATTEMPTS):
            request = await self._store.find_request(queue, uri)
            if request is None:
                raise NotFound(f"{queue} has never validated {uri}")
            if not request.terminal:
                if request.attempt > 1:
                    return Revalidation(request, already_in_flight=True)
                raise Refused(f"{request.id} is still {request.state}; wait for its verdict")
            if project:
                await self._check_project_verdict(request, project, flaky)
            else:
                await self._check_verdict(request, flaky)
            what = f" of project {project}" if project else ""
            why = f"re-validation{what} (attempt {request.attempt + 1})"
            if reason:
                why += f": {redact_line(reason, MAX_REASON_LENGTH)}"
            start = start_project_attempt if project else start_new_attempt
            try:
                started = await self._store.update_request(
                    request, start(request, now=self._clock(), reason=why)
                )
            except VersionMismatch:
                continue
            log.warning("%s: %s", started.id, why)
            if project:
                await self._carry_other_projects(started, project)
                await self._publisher.publish(topics.ANALYZE, analyze_message(started))
            else:
                await self._publisher.publish(topics.PROCESS, process_message(started))
            return Revalidation(started, already_in_flight=False)
        raise Refused(f"{queue}: {uri} kept changing; try again")

    async def _check_verdict(self, request: Request, flaky: bool) -> None:
        if request.state is not RequestState.FAILED:
            if request.state is RequestState.SUCCEEDED:
                raise Refused(f"{request.id} is green; green is final and is never re-validated")
            raise Refused(f"{request.id} was {request.state}; it has no verdict to re-validate")
        fact = await self._store.get_fact(request.queue, request.uri, "")
        if fact is None:
            raise Refused(f"{request.id} failed but its verdict is not recorded yet; try again")
        if fact.green:
            raise Refused(f"{request.uri} is green; green is final and is never re-validated")
        if fact.origin is FactOrigin.BUILD and not flaky:
            raise Refused(
                f"{request.uri} is broken by a real build ({fact.reason or 'no reason'}); "
                "re-validate a suspected flake with flaky=true (CLI: --flaky)"
            )

    async def _check_project_verdict(self, request: Request, project: str, flaky: bool) -> None:
        """The same rules as for the commit, on the project's own fact."""
        if request.state is not RequestState.FAILED:
            if request.state is RequestState.SUCCEEDED:
                raise Refused(
                    f"{request.id} is green in every project; green is final and is never "
                    "re-validated"
                )
            raise Refused(f"{request.id} was {request.state}; it has no verdict to re-validate")
        fact = await self._store.get_fact(request.queue, request.uri, project)
        if fact is None:
            raise Refused(f"{request.id}: project {project} has no verdict recorded yet; try again")
        if fact.green:
            raise Refused(
                f"{request.uri} is green in project {project}; green is final and is never "
                "re-validated"
            )
        if fact.origin is FactOrigin.BUILD and not flaky:
            raise Refused(
                f"{request.uri} is broken in project {project} by a real build "
                f"({fact.reason or 'no reason'}); re-validate a suspected flake with "
                "flaky=true (CLI: --flaky)"
            )

    async def _carry_other_projects(self, request: Request, project: str) -> None:
        """Give the new attempt the other projects' verdicts of the previous one, so that
        analyze has only ``project`` left to answer. A crash before this leaves them
        missing: analyze then answers them too (the new attempt has no build to read,
        so by inheritance or project builds), never by a guess."""
        config = self._queues.queue(request.queue)
        previous = request.attempt - 1
        for name in config.project_names:
            if name == project:
                continue
            fact = await self._store.get_fact_of_attempt(request.queue, request.uri, name, previous)
            if fact is None:
                continue
            with contextlib.suppress(AlreadyExists):
                await self._store.create_fact(
                    dataclasses.replace(
                        fact,
                        attempt=request.attempt,
                        created_at=self._clock(),
                        reason=f"kept from attempt {previous}: {fact.reason}"[:500],
                    )
                )
