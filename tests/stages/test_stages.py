"""Stage behaviour on real storage (SQLite and PostgreSQL) with extension fakes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.domain import BuildStrategy, FactOrigin, RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.postgres

Q = "mono/main"


@pytest.fixture
def pipe(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q)])


async def _ingest_head(pipe: Pipeline, files: dict[str, str | None], title: str) -> str:
    pipe.repo().advance("main", files, title=title)
    result = await pipe.ingester.ingest(Q, "test")
    return result.request.id


async def test_green_broken_fixed_rewrite(pipe: Pipeline) -> None:
    store = pipe.store
    r1 = await _ingest_head(pipe, {"src/a.py": "1"}, "green")
    await pipe.drain(twice=True)
    r2_uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "2"}))
    pipe.runner.script(r2_uri, Outcome.fail("unit"))
    r2 = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain(twice=True)
    r3 = await _ingest_head(pipe, {"src/a.py": "3"}, "fix")
    await pipe.drain(twice=True)
    # force push: replace the tip with a commit that does not descend from it
    repo = pipe.repo()
    head = repo.head("main")
    assert head is not None
    parent = repo.get(head).parents[0]
    rewritten = repo.commit({"src/a.py": "3b"}, parents=[parent], title="rewrite")
    repo.force_push("main", rewritten)
    r4 = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain(twice=True)

    requests = [await store.get_request(r) for r in (r1, r2, r3, r4)]
    assert all(r is not None for r in requests)
    states = [r.state for r in requests if r]
    strategies = [r.build_strategy for r in requests if r]
    assert states == [
        RequestState.SUCCEEDED,
        RequestState.FAILED,
        RequestState.SUCCEEDED,
        RequestState.SUCCEEDED,
    ]
    assert strategies == [
        BuildStrategy.FULL,
        BuildStrategy.INCREMENTAL,
        BuildStrategy.INCREMENTAL,
        BuildStrategy.FULL,
    ]
    assert requests[1] and requests[0] and requests[1].base_uri == requests[0].uri
    assert requests[2] and requests[2].base_uri == requests[0].uri
    degrees = []
    for r in requests:
        assert r is not None
        fact = await store.get_fact(Q, r.uri, "")
        assert fact is not None and fact.request_id == r.id and fact.origin is FactOrigin.BUILD
        degrees.append(fact.degree)
    assert degrees == [0.0, 1.0, 0.0, 0.0]
    queue = await store.get_queue(Q)
    assert queue is not None and requests[3] is not None
    assert (queue.last_green_request_id, queue.last_green_uri) == (r4, requests[3].uri)
    assert queue.in_flight_count == 0
    assert repo.head("verified-main") == rewritten
    assert len(pipe.runner.triggers) == 4  # duplicates started no extra build
    by_id = {e.id: (e.data.uri, e.data.green) for e in pipe.verdict_events}
    assert sorted(by_id.values()) == sorted(
        (r.uri, green) for r, green in zip(requests, [True, False, True, True], strict=True) if r
    )


async def test_heads_reported_while_one_builds_are_coalesced(pipe: Pipeline) -> None:
    first_uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "A"}))
    pipe.runner.script(first_uri, Outcome.hang("unit"))
    first = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()
    later = [await _ingest_head(pipe, {"src/a.py": c}, c) for c in "BCDEF"]
    await pipe.drain()
    (build_id, _target), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain()

    final = {rid: await pipe.store.get_request(rid) for rid in [first, *later]}
    oldest = final[first]
    assert oldest and oldest.state is RequestState.SUCCEEDED
    latest = final[later[-1]]
    assert latest and latest.state is RequestState.SUCCEEDED
    for rid in later[:-1]:
        r = final[rid]
        assert r and r.state is RequestState.SUPERSEDED, rid
        assert await pipe.store.get_fact(Q, r.uri, "") is None
    assert len(pipe.runner.triggers) == 2


async def test_re_reported_head_is_deduplicated(pipe: Pipeline) -> None:
    pipe.repo().advance("main", {"src/a.py": "1"})
    first = await pipe.ingester.ingest(Q, "poller")
    again = await pipe.ingester.ingest(Q, "webhook")
    assert not first.duplicate and again.duplicate
    assert again.request.id == first.request.id
    await pipe.drain()
    third = await pipe.ingester.ingest(Q, "poller")
    assert third.duplicate and third.request.state is RequestState.SUCCEEDED
    assert pipe.outbox.counts[topics.PROCESS] == 2  # the terminal duplicate publishes nothing


async def test_max_concurrent_is_never_exceeded(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=2)])
    uris = []
    for c in "ABCD":
        uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": c}))
        pipe.runner.script(uri, Outcome.hang("unit"))
        uris.append(uri)
        await pipe.ingester.ingest(Q, "poller")
        await pipe.drain()
        queue = await store.get_queue(Q)
        assert queue is not None and queue.in_flight_count <= 2
        assert len(pipe.runner.running()) <= 2
    assert len(pipe.runner.running()) == 2
    waiting = await store.list_requests(Q, states=[RequestState.ACCEPTED])
    assert [r.uri for r in waiting] == [uris[3]]
    for build_id, _ in pipe.runner.running():
        pipe.runner.release(build_id)
    await pipe.drain()
    for build_id, _ in pipe.runner.running():
        pipe.runner.release(build_id)
    await pipe.drain()
    done = await store.list_requests(Q)
    assert {r.state for r in done} <= {RequestState.SUCCEEDED, RequestState.SUPERSEDED}
    last = await store.find_request(Q, uris[3])
    assert last and last.state is RequestState.SUCCEEDED
    queue = await store.get_queue(Q)
    assert queue is not None and queue.in_flight_count == 0


async def test_errored_build_fails_closed(pipe: Pipeline) -> None:
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(uri, Outcome.errored("runner lost the checkout"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()
    request = await pipe.store.get_request(rid)
    assert request and request.state is RequestState.FAILED
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.degree == 1.0 and fact.origin is FactOrigin.FAIL_CLOSED
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_uri is None and queue.in_flight_count == 0


async def test_bookmark_never_moves_backwards(pipe: Pipeline) -> None:
    older = await _ingest_head(pipe, {"src/a.py": "1"}, "one")
    await pipe.drain()
    newer = await _ingest_head(pipe, {"src/a.py": "2"}, "two")
    await pipe.drain()
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == newer
    await pipe.handlers[topics.RECORD](topics_pb2.RecordMessage(request_id=older, queue=Q))
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == newer
    older_req = await pipe.store.get_request(older)
    assert older_req and pipe.repo().head("verified-main") != older_req.uri.rsplit("@", 1)[-1]


async def test_unknown_queue_and_bad_names_are_rejected(pipe: Pipeline) -> None:
    from stovepipe.config import UnknownQueue
    from stovepipe.domain import InvalidQueueName

    with pytest.raises(UnknownQueue, match="mono/main"):
        await pipe.ingester.ingest("other/main", "cli")
    with pytest.raises(InvalidQueueName):
        await pipe.ingester.ingest("Bad Name", "cli")


async def test_dead_letter_fails_closed_and_frees_the_queue(pipe: Pipeline) -> None:
    from stovepipe.stages.reconcile import DeadLetterReconciler

    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(uri, Outcome.hang("unit"))
    stuck = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()
    pipe.repo().advance("main", {"src/a.py": "2"})
    waiting = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()
    assert (await pipe.store.get_request(waiting)).state is RequestState.ACCEPTED  # type: ignore[union-attr]
    reconciler = DeadLetterReconciler(
        pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock
    )
    message = topics_pb2.BuildSignalMessage(build_id="b", request_id=stuck, queue=Q)
    await reconciler.reconcile(message, "UNAVAILABLE: runner gone")
    await reconciler.reconcile(message, "UNAVAILABLE: runner gone")  # a redelivered dead letter
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain()
    failed = await pipe.store.get_request(stuck)
    assert failed and failed.state is RequestState.FAILED and "runner gone" in failed.reason
    fact = await pipe.store.get_fact(Q, uri, "")
    assert fact and fact.degree == 1.0 and fact.origin is FactOrigin.FAIL_CLOSED
    assert "runner gone" in fact.reason
    woken = await pipe.store.get_request(waiting)
    assert woken and woken.state is RequestState.SUCCEEDED
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.in_flight_count == 0 and queue.last_green_request_id == waiting


async def test_sweeper_redrives_requests_whose_messages_were_lost(pipe: Pipeline) -> None:
    from datetime import timedelta

    from stovepipe.stages.sweep import StaleRequestSweeper

    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    pipe.repo().advance("main", {"src/a.py": "1"})
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    pipe.outbox.messages.clear()  # the broker lost the process message
    assert await sweeper.sweep_once(timedelta(minutes=5)) == []  # not stale yet
    pipe.clock.now += timedelta(minutes=10)
    both = await asyncio.gather(
        sweeper.sweep_once(timedelta(minutes=5)), sweeper.sweep_once(timedelta(minutes=5))
    )
    assert sorted(both[0] + both[1]) == [rid]  # two replicas: exactly one re-drives it
    await pipe.drain()
    request = await pipe.store.get_request(rid)
    assert request and request.state is RequestState.SUCCEEDED


async def test_sweeper_leaves_a_followed_build_alone_and_rescues_an_orphan(pipe: Pipeline) -> None:
    from datetime import timedelta

    from stovepipe.stages.sweep import StaleRequestSweeper

    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(uri, Outcome.hang("unit"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()  # admitted, build running, a poll is pending
    pipe.clock.now += timedelta(minutes=10)
    poller = pipe.handlers[topics.BUILDSIGNAL]
    for _, message, _ in list(pipe.outbox.delayed):
        await poller(message)  # buildsignal is alive: its heartbeat refreshes the build
    assert await sweeper.sweep_once(timedelta(minutes=5)) == []
    pipe.outbox.delayed.clear()  # now the poll chain is lost with the broker
    pipe.clock.now += timedelta(minutes=10)
    assert await sweeper.sweep_once(timedelta(minutes=5)) == [rid]
    (build_id, _), *_ = pipe.runner.running()
    pipe.runner.release(build_id)
    await pipe.drain()
    request = await pipe.store.get_request(rid)
    assert request and request.state is RequestState.SUCCEEDED
    assert len(pipe.runner.triggers) == 1  # re-driving did not start a second build


async def test_sweeper_records_verdicts_whose_record_messages_were_lost(pipe: Pipeline) -> None:
    from datetime import timedelta

    from stovepipe.stages.sweep import StaleRequestSweeper

    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    commit = pipe.repo().advance("main", {"src/a.py": "1"})
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.RECORD}))
    settled = await pipe.store.get_request(rid)
    assert settled and settled.state is RequestState.SUCCEEDED
    assert await pipe.store.get_fact(Q, settled.uri, "") is None
    assert await sweeper.sweep_once(timedelta(minutes=5)) == []  # not stale yet
    pipe.clock.now += timedelta(minutes=10)
    assert await sweeper.sweep_once(timedelta(minutes=5)) == [rid]
    await pipe.drain()
    fact = await pipe.store.get_fact(Q, settled.uri, "")
    assert fact and fact.green and fact.request_id == rid
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == rid
    assert pipe.repo().head("verified-main") == commit
    pipe.clock.now += timedelta(minutes=10)
    assert await sweeper.sweep_once(timedelta(minutes=5)) == []  # nothing left to mend


async def test_sweeper_moves_a_promotion_ref_left_behind_the_bookmark(pipe: Pipeline) -> None:
    from datetime import timedelta

    import grpc

    from stovepipe.stages.sweep import StaleRequestSweeper

    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    commit = pipe.repo().advance("main", {"src/a.py": "1"})
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.RECORD}))
    pipe.sc.fail("promote", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError):
        await pipe.handlers[topics.RECORD](topics_pb2.RecordMessage(request_id=rid, queue=Q))
    queue = await pipe.store.get_queue(Q)
    assert queue and queue.last_green_request_id == rid  # the bookmark moved ...
    assert pipe.repo().head("verified-main") is None  # ... and then the message was lost
    pipe.clock.now += timedelta(minutes=10)
    await sweeper.sweep_once(timedelta(minutes=5))
    assert pipe.repo().head("verified-main") == commit


async def test_a_targets_network_setting_reaches_the_runner(store: Store) -> None:
    """The sandbox keeps builds off the network unless the configuration says otherwise."""
    targets = [
        {"name": "unit", "command": "true", "paths": ["src/**"]},
        {"name": "fetch", "command": "true", "network": True},
    ]
    pipe = Pipeline(store, [queue_config(Q, build={"targets": targets})])
    await _ingest_head(pipe, {"src/a.py": "1"}, "first")
    await pipe.drain()
    (spec,) = pipe.runner.triggers
    assert {t.name: t.network for t in spec.targets} == {"unit": False, "fetch": True}


async def test_the_runner_gets_the_revision_ingest_described(pipe: Pipeline) -> None:
    """Ingest describes the head once (for its title); the revision in that answer goes
    to the runner with the build, so the runner does not ask SourceControl again."""
    commit = pipe.repo().advance("main", {"src/a.py": "1"}, title="first")
    request = (await pipe.ingester.ingest(Q, "test")).request
    assert request.head_revision == commit
    stored = await pipe.store.get_request(request.id)
    assert stored is not None and stored.head_revision == commit
    await pipe.drain()
    (spec,) = pipe.runner.triggers
    assert spec.head_revision == commit
    assert len(pipe.sc.calls_to("describe_commit")) == 1


async def test_a_head_ingest_could_not_describe_leaves_the_revision_to_the_runner(
    pipe: Pipeline,
) -> None:
    pipe.repo().advance("main", {"src/a.py": "1"}, title="first")
    pipe.sc.fail("describe_commit", grpc.StatusCode.UNAVAILABLE)
    request = (await pipe.ingester.ingest(Q, "test")).request
    assert (request.title, request.head_revision) == ("", "")
    await pipe.drain()
    (spec,) = pipe.runner.triggers
    assert spec.head_revision == ""  # empty: the runner asks SourceControl itself
