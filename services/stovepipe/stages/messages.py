"""The stage messages a Request produces, stamped with its attempt, and the wake-up.

Every message names the Request's attempt, so that after a re-validation a
message left over from an earlier attempt (a delayed poll, a late retry, a dead
letter) is recognised as stale and skipped instead of acting on the new one.
Building them in one place keeps that stamp from being forgotten.
"""

from __future__ import annotations

import logging

from stovepipe.domain import QueueState, Request, RequestState
from stovepipe.failures import Retryable
from stovepipe.stages import topics
from stovepipe.stages.ports import Publisher
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)

WAITING_REVALIDATIONS_LIMIT = 100


def process_message(request: Request) -> topics_pb2.ProcessMessage:
    return topics_pb2.ProcessMessage(
        request_id=request.id, queue=request.queue, request_attempt=request.attempt
    )


def build_message(request: Request, project: str = "") -> topics_pb2.BuildMessage:
    return topics_pb2.BuildMessage(
        request_id=request.id,
        queue=request.queue,
        scope=types_pb2.Scope(project=project),
        request_attempt=request.attempt,
    )


def record_message(request: Request, project: str = "") -> topics_pb2.RecordMessage:
    return topics_pb2.RecordMessage(
        request_id=request.id,
        queue=request.queue,
        scope=types_pb2.Scope(project=project),
        request_attempt=request.attempt,
    )


def analyze_message(request: Request) -> topics_pb2.AnalyzeMessage:
    return topics_pb2.AnalyzeMessage(
        request_id=request.id, queue=request.queue, request_attempt=request.attempt
    )


def is_stale(message_attempt: int, request: Request) -> bool:
    """True when a message belongs to an attempt older than the Request's current one.

    ``0`` (a message from before attempts were stamped, or a hand-written one)
    means "the current attempt". A message from a *newer* attempt than the
    stored Request means this read is behind the write that started it, so
    the delivery is retried rather than judged.
    """
    if message_attempt == 0 or message_attempt == request.attempt:
        return False
    if message_attempt > request.attempt:
        raise Retryable(
            f"{request.id}: message of attempt {message_attempt}, stored attempt is "
            f"{request.attempt} (not yet visible?)"
        )
    log.info(
        "%s: skipping a message of attempt %d; the Request is on attempt %d",
        request.id,
        message_attempt,
        request.attempt,
    )
    return True


async def wake_queue(store: Store, publisher: Publisher, queue: QueueState, freed_by: str) -> None:
    """After a slot was freed: wake the Queue's latest head and any waiting re-validation.

    Call it once the bookmark reflects the verdict of ``freed_by`` (record does,
    after its bookmark step), so the woken head is admitted against it.

    Wake-ups normally name only the latest head, because older waiting heads are
    superseded by it. A re-validation is never superseded, so one waiting at a
    closed gate needs its own wake-up or it would wait for the sweeper.

    Only a head still ``accepted`` is woken. process answers a ``processing``
    one by sending it back to build, which resumes polling its build: a wake-up
    for a head that is already building would start a second poll chain beside
    the first, one more for every slot freed while it builds.
    """
    async with store.unit(read_only=True):  # both reads in one transaction; the publishes after it
        wake = await wake_messages(store, queue, freed_by)
    for message in wake:
        await publisher.publish(topics.PROCESS, message)


async def wake_messages(
    store: Store, queue: QueueState, freed_by: str
) -> list[topics_pb2.ProcessMessage]:
    """What :func:`wake_queue` publishes, read but not sent: a stage that already holds
    a unit reads it there and publishes after its commit."""
    latest = queue.latest_request_id
    wake: list[topics_pb2.ProcessMessage] = []
    if latest and latest != freed_by:
        head = await store.get_request(latest)
        if head is None or head.state is RequestState.ACCEPTED:  # None: not yet visible
            wake.append(topics_pb2.ProcessMessage(request_id=latest, queue=queue.name))
    waiting = await store.list_requests(
        queue.name,
        states=[RequestState.ACCEPTED],
        limit=WAITING_REVALIDATIONS_LIMIT,
        newest_first=False,
    )
    return wake + [process_message(r) for r in waiting if r.attempt > 1 and r.id != freed_by]
