"""Behaviour traps found in review (issue 9, item 4), each pinned by a test.

Each trap's own test fails on the code as it was before its fix. A few more
guard what a fix had to keep: the wake-up when a build ends without a green
verdict, and the sweeper's repair of a wake-up that was lost.
"""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from harness.stages import REPO, Pipeline, queue_config
from stovepipe.domain import BuildStrategy, QueueState, RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.stages.ports import Clock
from stovepipe.stages.sweep import StaleRequestSweeper
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.postgres

Q = "mono/main"


async def _head(pipe: Pipeline, content: str, outcome: Outcome | None = None) -> str:
    """Push a commit to ``main``, script its build, ingest it; the Request id."""
    commit = pipe.repo().advance("main", {"src/a.py": content}, title=content)
    if outcome is not None:
        pipe.runner.script(pipe.sc.uri(pipe.source(), commit), outcome)
    return (await pipe.ingester.ingest(Q, "poller")).request.id


async def test_a_head_at_a_closed_gate_asks_source_control_nothing(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=1)])
    await _head(pipe, "green")
    await pipe.drain()
    await _head(pipe, "long", Outcome.hang("unit"))  # holds the only slot
    await pipe.drain()
    asked = len(pipe.sc.calls_to("is_ancestor"))
    pipe.sc.fail("is_ancestor", grpc.StatusCode.UNAVAILABLE, times=100)

    waiting = await _head(pipe, "waits")
    await pipe.drain(twice=True)  # an RPC here would raise UNAVAILABLE out of process

    request = await store.get_request(waiting)
    assert request and request.state is RequestState.ACCEPTED
    assert len(pipe.sc.calls_to("is_ancestor")) == asked
    assert pipe.outbox.counts[topics.BUILD] == 2  # the waiting head was not admitted


def _sweeper(pipe: Pipeline) -> StaleRequestSweeper:
    return StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)


async def test_a_long_build_that_keeps_polling_is_never_redriven(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q)])
    sweeper = _sweeper(pipe)
    stale = pipe.stale_after
    # One poll period: the poll interval rounded up to a delay tier, plus lag. The
    # heartbeat (a third of the window) leaves two thirds of the window for it.
    period = stale * 0.65
    rid = await _head(pipe, "slow", Outcome.hang("unit"))
    await pipe.drain()
    poller = pipe.handlers[topics.BUILDSIGNAL]
    next_poll = pipe.clock.now + period
    end = pipe.clock.now + timedelta(hours=1)
    while pipe.clock.now < end:
        pipe.clock.now += stale / 4  # the sweeper's cadence
        if pipe.clock.now >= next_poll:
            polls = [message for _, message, _ in pipe.outbox.delayed]
            pipe.outbox.delayed.clear()
            for message in polls:
                await poller(message)  # still running: buildsignal asks again later
            next_poll += period
        assert await sweeper.sweep_once(stale) == [], pipe.clock.now
    assert pipe.outbox.counts[topics.PROCESS] == 1  # only ingest's
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain()
    request = await store.get_request(rid)
    assert request and request.state is RequestState.SUCCEEDED
    assert len(pipe.runner.triggers) == 1


async def test_record_promotes_only_while_it_still_holds_the_bookmark(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stovepipe.stages import queue_ops

    pipe = Pipeline(store, [queue_config(Q)])
    repo = pipe.repo()
    repo.advance("main", {"src/a.py": "0"}, title="root")
    older_commit = repo.advance("main", {"src/a.py": "1"}, title="older")
    older = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.RECORD}))
    parent = repo.get(older_commit).parents[0]
    newer_commit = repo.commit({"src/a.py": "1b"}, parents=[parent], title="rewrite")
    repo.force_push("main", newer_commit)  # the older head is not an ancestor of the newer
    newer = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.RECORD}))
    record = pipe.handlers[topics.RECORD]
    advance = queue_ops.advance_bookmark

    async def overtaken_after_advancing(
        store: Store, queue: str, request_id: str, uri: str, clock: Clock
    ) -> QueueState:
        state = await advance(store, queue, request_id, uri, clock)
        if request_id == older:  # the newer head's record runs to its end in between
            await record(topics_pb2.RecordMessage(request_id=newer, queue=Q))
        return state

    monkeypatch.setattr(queue_ops, "advance_bookmark", overtaken_after_advancing)
    await record(topics_pb2.RecordMessage(request_id=older, queue=Q))

    queue = await store.get_queue(Q)
    assert queue and queue.last_green_request_id == newer
    assert repo.head("verified-main") == newer_commit
    promoted = [c.args[0] for c in pipe.sc.calls_to("promote")]
    assert promoted == [pipe.sc.uri(pipe.source(), newer_commit)]  # never the older head


async def test_a_head_that_waited_for_a_slot_builds_incrementally_from_the_one_before(
    store: Store,
) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=1)])
    first = await _head(pipe, "A", Outcome.hang("unit"))
    await pipe.drain()
    waiting = await _head(pipe, "B")
    await pipe.drain()
    b = await store.get_request(waiting)
    assert b and b.state is RequestState.ACCEPTED
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain(twice=True)

    a, b = await store.get_request(first), await store.get_request(waiting)
    assert a and a.state is RequestState.SUCCEEDED
    assert b and b.state is RequestState.SUCCEEDED
    assert (b.build_strategy, b.base_uri) == (BuildStrategy.INCREMENTAL, a.uri)
    queue = await store.get_queue(Q)
    assert queue and queue.last_green_request_id == waiting and queue.in_flight_count == 0


@pytest.mark.parametrize("ending", ["fails", "is cancelled"])
async def test_a_head_that_waited_is_woken_when_the_build_before_it_ends_without_green(
    store: Store, ending: str
) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=1)])
    green = await _head(pipe, "green")
    await pipe.drain()
    await _head(pipe, "A", Outcome.fail("unit") if ending == "fails" else Outcome.hang("unit"))
    if ending == "is cancelled":
        await pipe.drain()
    waiting = await _head(pipe, "B")
    if ending == "is cancelled":
        await pipe.drain()
        (build_id, _), *_ = pipe.runner.running()
        await pipe.runner.cancel(build_id)
    await pipe.drain()

    b = await store.get_request(waiting)
    base = await store.get_request(green)
    assert b and base and b.state is RequestState.SUCCEEDED
    assert (b.build_strategy, b.base_uri) == (BuildStrategy.INCREMENTAL, base.uri)


async def test_a_wake_lost_between_slot_release_and_record_is_repaired_by_the_sweeper(
    store: Store,
) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=1)])
    sweeper = _sweeper(pipe)
    first = await _head(pipe, "A", Outcome.hang("unit"))
    await pipe.drain()
    waiting = await _head(pipe, "B")
    await pipe.drain()
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    # buildsignal frees the slot and settles A; then the broker forgets everything.
    await pipe.drain(lose=frozenset({topics.RECORD}))
    b = await store.get_request(waiting)
    assert b and b.state is RequestState.ACCEPTED
    pipe.clock.now += pipe.stale_after * 2
    assert sorted(await sweeper.sweep_once(pipe.stale_after)) == sorted([first, waiting])
    await pipe.drain()
    a, b = await store.get_request(first), await store.get_request(waiting)
    assert a and b and b.state is RequestState.SUCCEEDED
    assert await store.get_fact(Q, a.uri, "") is not None


async def test_a_freed_slot_does_not_start_a_second_poll_chain_for_a_building_head(
    store: Store,
) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=2)])
    await _head(pipe, "A", Outcome.hang("unit"))
    await pipe.drain()
    building = await _head(pipe, "B", Outcome.hang("unit"))
    await pipe.drain()
    first, second = pipe.runner.running()
    pipe.runner.release(first[0])
    await pipe.drain()  # A ends and frees its slot while B, the latest head, builds

    b = await store.get_request(building)
    assert b and b.state is RequestState.PROCESSING and b.build_id == second[0]
    polls = [m for t, m, _ in pipe.outbox.delayed if t == topics.BUILDSIGNAL]
    signals = [p for p in polls if isinstance(p, topics_pb2.BuildSignalMessage)]
    assert signals == polls
    assert [p.request_id for p in signals] == [building]  # one poll chain, not two


OTHER = "other/main"
OTHER_REPO = "/repos/other"


def _two_queues(store: Store) -> Pipeline:
    other = queue_config(OTHER, source={"repository": OTHER_REPO, "ref": "main"})
    return Pipeline(store, [queue_config(Q), other])


async def _green_on_both(pipe: Pipeline) -> tuple[str, str]:
    """A green head on each Queue; the second one's promotion is lost. Their commits."""
    in_place = pipe.repo().advance("main", {"src/a.py": "1"})
    await pipe.ingester.ingest(Q, "poller")
    await pipe.drain()
    lagging = pipe.repo(OTHER_REPO).advance("main", {"src/a.py": "1"})
    lagging_id = (await pipe.ingester.ingest(OTHER, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.RECORD}))
    pipe.sc.fail("promote", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError):  # the bookmark moves, then Promote fails
        await pipe.handlers[topics.RECORD](
            topics_pb2.RecordMessage(request_id=lagging_id, queue=OTHER)
        )
    assert pipe.repo(OTHER_REPO).head("verified-main") is None
    return in_place, lagging


def _promotions(pipe: Pipeline, repository: str) -> int:
    return sum(1 for c in pipe.sc.calls_to("promote") if c.source.repository == repository)


async def test_the_sweeper_promotes_only_a_ref_that_lags_and_only_once(store: Store) -> None:
    pipe = _two_queues(store)
    sweeper = _sweeper(pipe)
    in_place, lagging = await _green_on_both(pipe)
    before = _promotions(pipe, REPO), _promotions(pipe, OTHER_REPO)

    for _ in range(4):
        pipe.clock.now += pipe.stale_after * 2
        await sweeper.sweep_once(pipe.stale_after)

    assert _promotions(pipe, REPO) == before[0]  # in place: never asked again
    assert _promotions(pipe, OTHER_REPO) == before[1] + 1  # lagging: promoted once
    assert pipe.repo().head("verified-main") == in_place
    assert pipe.repo(OTHER_REPO).head("verified-main") == lagging


async def test_a_failed_promotion_in_the_sweep_is_classified_and_tried_next_pass(
    store: Store,
) -> None:
    pipe = _two_queues(store)
    sweeper = _sweeper(pipe)
    _, lagging = await _green_on_both(pipe)
    pipe.sc.fail("promote", grpc.StatusCode.UNAVAILABLE)
    pipe.clock.now += pipe.stale_after * 2
    await sweeper.sweep_once(pipe.stale_after)  # logged, not raised
    assert pipe.repo(OTHER_REPO).head("verified-main") is None
    pipe.clock.now += pipe.stale_after * 2
    await sweeper.sweep_once(pipe.stale_after)
    assert pipe.repo(OTHER_REPO).head("verified-main") == lagging


async def test_an_unclassified_error_in_a_repair_is_not_swallowed(store: Store) -> None:
    pipe = _two_queues(store)
    sweeper = _sweeper(pipe)
    await _green_on_both(pipe)

    async def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug, not a fault")

    pipe.sc.promote = broken  # type: ignore[method-assign,assignment]
    pipe.clock.now += pipe.stale_after * 2
    with pytest.raises(TypeError, match="a bug"):
        await sweeper.sweep_once(pipe.stale_after)
