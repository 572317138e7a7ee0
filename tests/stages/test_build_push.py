"""Pushed build ends (``WatchBuilds`` → buildwatch → buildsignal) beside polling.

Both paths reach buildsignal's one handler; whichever comes first settles the
build, the other changes nothing, and a pushed message never retries, starts a
poll chain or dead-letters. Real storage (SQLite and PostgreSQL), the fake
runner's own ``watch_builds`` feed, and the real ``BuildWatcher``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from google.protobuf.message import Message

from harness.stages import Pipeline, queue_config
from stovepipe.domain import RequestState
from stovepipe.extensions.buildrunner import BuildEnded, BuildState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.stages.buildwatch import BuildWatcher, signal_of
from stovepipe.storage import Store
from stovepipe.testing.waiting import until
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.postgres

Q = "mono/main"


@pytest.fixture
def pipe(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q)])


@pytest_asyncio.fixture
async def watcher(pipe: Pipeline) -> AsyncIterator[BuildWatcher]:
    """The real watcher on the fake runner's feed, publishing into the pipeline's outbox."""
    watching = BuildWatcher({"local": pipe.runner}, pipe.outbox)
    stop = asyncio.Event()
    task = asyncio.create_task(watching.run(stop))

    async def opened() -> bool:
        return watching.watching["local"]

    await until(opened, what="the build watch")
    yield watching
    stop.set()
    await task


async def _hanging_head(pipe: Pipeline) -> tuple[str, str]:
    """A head whose build is running: its first poll went to the delay tier."""
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(uri, Outcome.hang("unit"))
    request_id = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain()
    (build_id, _target), *_ = pipe.runner.running()
    assert [m for t, m, _ in pipe.outbox.delayed if t == topics.BUILDSIGNAL], "no poll chain"
    return request_id, build_id


async def _forwarded(watcher: BuildWatcher, count: int) -> None:
    async def done() -> bool:
        return watcher.forwarded >= count

    await until(done, what=f"{count} pushed notice(s) forwarded")


async def _one_verdict(pipe: Pipeline, request_id: str) -> None:
    request = await pipe.store.get_request(request_id)
    assert request is not None and request.state is RequestState.SUCCEEDED
    assert len(await pipe.store.list_fact_attempts(Q, request.uri, "")) == 1
    assert pipe.outbox.counts[topics.RECORD] == 1
    assert [e.data.uri for e in pipe.verdict_events] == [request.uri]
    queue = await pipe.store.get_queue(Q)
    assert queue is not None and queue.in_flight_count == 0
    assert queue.last_green_request_id == request_id


async def test_push_settles_the_build_and_the_later_poll_changes_nothing(
    pipe: Pipeline, watcher: BuildWatcher
) -> None:
    request_id, build_id = await _hanging_head(pipe)
    pipe.runner.release(build_id)
    await _forwarded(watcher, 1)
    pushed = [
        m
        for t, m in pipe.outbox.messages
        if t == topics.BUILDSIGNAL and isinstance(m, topics_pb2.BuildSignalMessage)
    ]
    assert [(m.build_id, m.request_id, m.pushed) for m in pushed] == [(build_id, request_id, True)]

    # The pushed message settles it before the delayed poll comes back; then the
    # poll finds it settled and recorded, and does nothing more.
    await pipe.drain()

    await _one_verdict(pipe, request_id)


async def test_poll_first_then_the_push_changes_nothing(pipe: Pipeline) -> None:
    request_id, build_id = await _hanging_head(pipe)
    async with pipe.runner.watch_builds() as notices:
        pipe.runner.release(build_id)
        await pipe.drain()  # the delayed poll settles it
        notice = await asyncio.wait_for(anext(aiter(notices)), 30)
    message = signal_of(notice)
    assert message is not None

    await pipe.handlers[topics.BUILDSIGNAL](message)
    await pipe.drain()

    await _one_verdict(pipe, request_id)


async def test_duplicate_pushes_and_redelivery_record_one_fact(
    pipe: Pipeline, watcher: BuildWatcher
) -> None:
    request_id, build_id = await _hanging_head(pipe)
    pipe.runner.release(build_id)
    await _forwarded(watcher, 1)
    duplicate = next(m for t, m in pipe.outbox.messages if t == topics.BUILDSIGNAL)
    await pipe.outbox.publish(topics.BUILDSIGNAL, duplicate)

    await pipe.drain(twice=True)  # every message delivered twice as well

    request = await pipe.store.get_request(request_id)
    assert request is not None and request.state is RequestState.SUCCEEDED
    assert len(await pipe.store.list_fact_attempts(Q, request.uri, "")) == 1
    assert {e.data.uri for e in pipe.verdict_events} == {request.uri}
    queue = await pipe.store.get_queue(Q)
    assert queue is not None and queue.in_flight_count == 0


async def test_push_lost_polling_settles(pipe: Pipeline) -> None:
    request_id, build_id = await _hanging_head(pipe)
    pipe.runner.release(build_id)  # nobody is watching: the notice goes nowhere

    await pipe.drain()

    await _one_verdict(pipe, request_id)


async def test_push_that_fails_midway_is_dropped_and_polling_settles(
    pipe: Pipeline, watcher: BuildWatcher
) -> None:
    """A pushed message never raises (no retry, no dead letter, no fail-closed verdict):
    here its record publish fails after the outcome is stamped; the poll settles it."""
    request_id, build_id = await _hanging_head(pipe)
    pipe.runner.release(build_id)
    await _forwarded(watcher, 1)
    publish = pipe.outbox.publish
    failed: list[str] = []

    async def broker_down_once(topic: str, message: Message) -> None:
        if topic == topics.RECORD and not failed:
            failed.append(topic)
            raise ConnectionError("broker unreachable")
        await publish(topic, message)

    pipe.outbox.publish = broker_down_once  # type: ignore[method-assign]

    await pipe.drain()

    assert failed == [topics.RECORD]
    await _one_verdict(pipe, request_id)


async def test_forged_or_unconfirmed_pushes_change_nothing(pipe: Pipeline) -> None:
    request_id, build_id = await _hanging_head(pipe)
    handler = pipe.handlers[topics.BUILDSIGNAL]
    polls_before = list(pipe.outbox.delayed)
    forged = [
        # a build nobody triggered
        topics_pb2.BuildSignalMessage(
            build_id="build-forged", request_id=request_id, queue=Q, pushed=True
        ),
        # our build, claimed for another Request
        topics_pb2.BuildSignalMessage(
            build_id=build_id, request_id=f"request/{Q}/99", queue=Q, pushed=True
        ),
        # our build, but the runner's Status says it still runs
        topics_pb2.BuildSignalMessage(
            build_id=build_id, request_id=request_id, queue=Q, pushed=True
        ),
    ]

    for message in forged:
        await handler(message)  # never raises: nothing to retry or dead-letter

    request = await pipe.store.get_request(request_id)
    assert request is not None and request.state is RequestState.PROCESSING
    assert pipe.outbox.delayed == polls_before  # no second poll chain
    assert not [t for t, _ in pipe.outbox.messages if t == topics.RECORD]
    build = await pipe.store.get_build(Q, build_id)
    assert build is not None and not build.status.terminal


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"request/{Q}/7#2#-", (f"request/{Q}/7", Q, 2, "")),
        (f"request/{Q}/7#1#web", (f"request/{Q}/7", Q, 1, "web")),
        ("request/a#b/3#1#-", None),  # not a Queue name
        ("someone-else's-build", None),
        (f"request/{Q}/7#x#-", None),
        (f"request/{Q}/0#1#-", None),
        ("", None),
    ],
)
def test_a_notice_names_its_request_by_the_idempotency_key(
    key: str, expected: tuple[str, str, int, str] | None
) -> None:
    message = signal_of(BuildEnded(build_id="b-1", state=BuildState.SUCCEEDED, idempotency_key=key))
    if expected is None:
        assert message is None
        return
    assert message is not None
    got = (message.request_id, message.queue, message.request_attempt, message.scope.project)
    assert (got, message.build_id, message.pushed) == (expected, "b-1", True)
