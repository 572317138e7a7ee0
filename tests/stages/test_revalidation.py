"""Re-validation: a new attempt for a commit whose verdict may be wrong.

Runs on both backends with extension fakes. What is checked: which attempt's
fact answers, what may and may not be re-validated, that a re-validation of an
older head is neither superseded nor superseding and still waits for a slot,
and that messages of an earlier attempt cannot touch the attempt now running.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.domain import BuildStrategy, FactOrigin, NotFound, Refused, RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.stages.sweep import StaleRequestSweeper
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = pytest.mark.postgres

Q = "mono/main"


@pytest.fixture
def pipe(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q)])


async def _head(pipe: Pipeline, content: str, outcome: Outcome | None = None) -> tuple[str, str]:
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": content}))
    if outcome is not None:
        pipe.runner.script(uri, outcome)
    return (await pipe.ingester.ingest(Q, "test")).request.id, uri


async def _verdicts(pipe: Pipeline, uri: str) -> list[tuple[int, float, FactOrigin]]:
    return [
        (f.attempt, f.degree, f.origin) for f in await pipe.store.list_fact_attempts(Q, uri, "")
    ]


async def test_a_real_verdict_displaces_fail_closed(pipe: Pipeline) -> None:
    rid, uri = await _head(pipe, "1", Outcome.errored("runner lost the checkout"))
    await pipe.drain(twice=True)
    assert await _verdicts(pipe, uri) == [(1, 1.0, FactOrigin.FAIL_CLOSED)]
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id is None

    pipe.runner.script(uri, Outcome.succeed())
    started = await pipe.revalidator.revalidate(Q, uri, reason="runner was being redeployed")
    assert not started.already_in_flight
    assert (started.request.state, started.request.attempt) == (RequestState.ACCEPTED, 2)
    assert "runner was being redeployed" in started.request.reason
    await pipe.drain(twice=True)

    request = await pipe.store.get_request(rid)
    assert request and (request.state, request.attempt) == (RequestState.SUCCEEDED, 2)
    assert request.build_strategy is BuildStrategy.FULL
    assert await _verdicts(pipe, uri) == [
        (1, 1.0, FactOrigin.FAIL_CLOSED),
        (2, 0.0, FactOrigin.BUILD),
    ]
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.green and fact.attempt == 2
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == rid and queue.in_flight_count == 0
    assert pipe.repo().head("verified-main") == pipe.repo().head("main")
    keys = [t.idempotency_key for t in pipe.runner.triggers]
    assert sorted(set(keys)) == [f"{rid}#1#-", f"{rid}#2#-"]  # one build per attempt
    events = {e.id: (e.data.attempt, e.data.green) for e in pipe.verdict_events}
    assert sorted(events.values()) == [(1, False), (2, True)]


async def test_a_broken_build_needs_flaky_and_a_passing_rerun_is_green(pipe: Pipeline) -> None:
    rid, uri = await _head(pipe, "1", Outcome.fail("unit"))
    await pipe.drain()
    with pytest.raises(Refused, match="flaky"):
        await pipe.revalidator.revalidate(Q, uri)
    request = await pipe.store.get_request(rid)
    assert request and (request.state, request.attempt) == (RequestState.FAILED, 1)

    pipe.runner.script(uri, Outcome.succeed())
    await pipe.revalidator.revalidate(Q, uri, flaky=True)
    await pipe.drain(twice=True)
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.green and fact.attempt == 2 and fact.origin is FactOrigin.BUILD


async def test_fail_closed_never_displaces_a_real_broken_verdict(pipe: Pipeline) -> None:
    _rid, uri = await _head(pipe, "1", Outcome.fail("unit"))
    await pipe.drain()
    pipe.runner.script(uri, Outcome.errored("runner crashed"))
    await pipe.revalidator.revalidate(Q, uri, flaky=True)
    await pipe.drain()
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.attempt == 1 and fact.origin is FactOrigin.BUILD
    # the answer is still a real build's broken verdict, so a third try needs --flaky too
    with pytest.raises(Refused, match="flaky"):
        await pipe.revalidator.revalidate(Q, uri)
    pipe.runner.script(uri, Outcome.fail("unit"))
    await pipe.revalidator.revalidate(Q, uri, flaky=True)
    await pipe.drain()
    assert await _verdicts(pipe, uri) == [
        (1, 1.0, FactOrigin.BUILD),
        (2, 1.0, FactOrigin.FAIL_CLOSED),
        (3, 1.0, FactOrigin.BUILD),
    ]
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.attempt == 3


async def test_green_is_final_and_only_a_verdict_can_be_questioned(pipe: Pipeline) -> None:
    _green, green_uri = await _head(pipe, "1")
    await pipe.drain()
    with pytest.raises(Refused, match="green is final"):
        await pipe.revalidator.revalidate(Q, green_uri, flaky=True)

    _running, running_uri = await _head(pipe, "2", Outcome.hang("unit"))
    await pipe.drain()
    with pytest.raises(Refused, match="still processing"):
        await pipe.revalidator.revalidate(Q, running_uri)

    _old, old_uri = await _head(pipe, "3")
    await _head(pipe, "4")
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain()
    with pytest.raises(Refused, match="superseded"):
        await pipe.revalidator.revalidate(Q, old_uri)

    with pytest.raises(NotFound, match="never validated"):
        await pipe.revalidator.revalidate(Q, "git:/repos/mono#0000")
    facts = await pipe.store.list_fact_attempts(Q, green_uri, "")
    assert [f.attempt for f in facts] == [1]


async def test_asking_again_while_in_flight_starts_no_second_attempt(pipe: Pipeline) -> None:
    rid, uri = await _head(pipe, "1", Outcome.errored("flaky runner"))
    await pipe.drain()
    pipe.runner.script(uri, Outcome.hang("unit"))
    results = await asyncio.gather(
        *(pipe.revalidator.revalidate(Q, uri, reason=f"operator {i}") for i in range(5))
    )
    assert sorted(r.already_in_flight for r in results) == [False, True, True, True, True]
    assert {r.request.attempt for r in results} == {2}
    await pipe.drain()
    again = await pipe.revalidator.revalidate(Q, uri)
    assert again.already_in_flight and again.request.state is RequestState.PROCESSING
    assert [t.idempotency_key for t in pipe.runner.triggers].count(f"{rid}#2#-") == 1


async def test_an_older_head_is_revalidated_beside_newer_heads(pipe: Pipeline) -> None:
    old, old_uri = await _head(pipe, "1", Outcome.errored("runner lost the checkout"))
    await pipe.drain()
    newer, _ = await _head(pipe, "2", Outcome.hang("unit"))
    await pipe.drain()
    pipe.runner.script(old_uri, Outcome.succeed())
    await pipe.revalidator.revalidate(Q, old_uri)
    await pipe.drain()
    waiting = await pipe.store.get_request(old)
    assert waiting and waiting.state is RequestState.ACCEPTED  # gate closed, not superseded
    newest, _ = await _head(pipe, "3")  # a newer head arrives while it waits
    await pipe.drain()
    waiting = await pipe.store.get_request(old)
    assert waiting and waiting.state is RequestState.ACCEPTED

    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain(twice=True)
    # the slot went round: the newer head built, then newest and the re-validation
    states = {r: await pipe.store.get_request(r) for r in (old, newer, newest)}
    assert {r: s.state for r, s in states.items() if s} == {
        old: RequestState.SUCCEEDED,
        newer: RequestState.SUCCEEDED,
        newest: RequestState.SUCCEEDED,
    }
    old_request = states[old]
    assert old_request and old_request.build_strategy is BuildStrategy.FULL
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == newest  # never moved back to the old head
    assert queue.in_flight_count == 0


async def test_messages_of_an_earlier_attempt_cannot_touch_the_current_one(pipe: Pipeline) -> None:
    rid, uri = await _head(pipe, "1", Outcome.hang("unit"))
    await pipe.drain()
    first = await pipe.store.get_request(rid)
    assert first and first.build_id
    old_build = first.build_id
    old_signal = topics_pb2.BuildSignalMessage(
        build_id=old_build, request_id=rid, queue=Q, request_attempt=1
    )
    reconciler = DeadLetterReconciler(
        pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock
    )
    await reconciler.reconcile(old_signal, "DEADLINE_EXCEEDED: runner too slow")
    await pipe.drain()
    assert await _verdicts(pipe, uri) == [(1, 1.0, FactOrigin.FAIL_CLOSED)]

    await pipe.revalidator.revalidate(Q, uri)
    await pipe.drain()
    current = await pipe.store.get_request(rid)
    assert current and current.state is RequestState.PROCESSING and current.attempt == 2
    assert current.build_id and current.build_id != old_build

    pipe.runner.release(old_build, None)  # the first attempt's build ends (green!) now
    stale = [
        (topics.BUILDSIGNAL, old_signal),
        (
            topics.BUILDSIGNAL,
            topics_pb2.BuildSignalMessage(build_id=old_build, request_id=rid, queue=Q),
        ),
        (topics.RECORD, topics_pb2.RecordMessage(request_id=rid, queue=Q, request_attempt=1)),
        (topics.BUILD, topics_pb2.BuildMessage(request_id=rid, queue=Q, request_attempt=1)),
        (topics.PROCESS, topics_pb2.ProcessMessage(request_id=rid, queue=Q, request_attempt=1)),
    ]
    for topic, message in stale:
        await pipe.handlers[topic](message)
    await reconciler.reconcile(
        topics_pb2.BuildMessage(
            request_id=rid, queue=Q, scope=types_pb2.Scope(), request_attempt=1
        ),
        "a late dead letter of attempt 1",
    )
    after = await pipe.store.get_request(rid)
    assert after == current  # untouched: same state, build and version
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.holds_slot(rid) and queue.in_flight_count == 1
    assert await _verdicts(pipe, uri) == [(1, 1.0, FactOrigin.FAIL_CLOSED)]

    with pytest.raises(Exception, match="not yet visible"):  # a message from the future waits
        await pipe.handlers[topics.RECORD](
            topics_pb2.RecordMessage(request_id=rid, queue=Q, request_attempt=3)
        )
    pipe.runner.release(current.build_id)
    await pipe.drain()
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.green and fact.attempt == 2


async def test_the_sweeper_finishes_a_revalidation_whose_messages_were_lost(
    pipe: Pipeline,
) -> None:
    rid, uri = await _head(pipe, "1", Outcome.errored("runner lost the checkout"))
    await pipe.drain()
    pipe.runner.script(uri, Outcome.succeed())
    await pipe.revalidator.revalidate(Q, uri)
    pipe.outbox.messages.clear()  # the broker forgot the process message
    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    pipe.clock.now += timedelta(minutes=10)
    assert await sweeper.sweep_once(timedelta(minutes=5)) == [rid]
    await pipe.drain(lose=frozenset({topics.RECORD}))  # ... and then the record message
    request = await pipe.store.get_request(rid)
    assert request and (request.state, request.attempt) == (RequestState.SUCCEEDED, 2)
    assert [a for a, *_ in await _verdicts(pipe, uri)] == [1]
    pipe.clock.now += timedelta(minutes=10)
    assert rid in await sweeper.sweep_once(timedelta(minutes=5))
    await pipe.drain()
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.green and fact.attempt == 2
