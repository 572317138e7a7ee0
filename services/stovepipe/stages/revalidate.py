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

Asking again while the new attempt is in flight returns it unchanged, so a
retried call (or two operators) never starts a second one. A crash after the
state change and before the publish leaves an ``accepted`` Request that the
sweeper re-drives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stovepipe.domain import (
    FactOrigin,
    NotFound,
    Refused,
    Request,
    RequestState,
    start_new_attempt,
    validate_queue_name,
)
from stovepipe.domain.errors import InvalidInput
from stovepipe.redaction import redact_line
from stovepipe.stages import queue_ops, topics
from stovepipe.stages.base import StageBase
from stovepipe.stages.messages import process_message
from stovepipe.storage import VersionMismatch

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Revalidation:
    request: Request
    already_in_flight: bool


class Revalidator(StageBase):
    """Starts a new attempt for a commit whose verdict may be wrong."""

    async def revalidate(
        self, queue: str, uri: str, *, flaky: bool = False, reason: str = ""
    ) -> Revalidation:
        validate_queue_name(queue)
        self._queues.queue(queue)
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
            await self._check_verdict(request, flaky)
            why = f"re-validation (attempt {request.attempt + 1})"
            if reason:
                why += f": {redact_line(reason, MAX_REASON_LENGTH)}"
            try:
                started = await self._store.update_request(
                    request, start_new_attempt(request, now=self._clock(), reason=why)
                )
            except VersionMismatch:
                continue
            log.warning("%s: %s", started.id, why)
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
