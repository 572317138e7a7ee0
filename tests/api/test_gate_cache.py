"""The gate cache behind GetLastGreen: served from memory, never greener than storage.

Every test runs on both storage backends. The pipeline is the in-process one
(``harness.stages``): its record stage really moves the bookmark and publishes
the verdict events; ``ScriptedFeed`` hands those events to the cache when a
test says so (late, never, racing a read) and says whether the feed is caught
up. The last tests use the real event feed on the real broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.api.gate_cache import Bookmark, GateCache, GateCacheSettings, HeadUnknown
from stovepipe.domain import (
    GREEN,
    FactOrigin,
    QueueState,
    Refused,
    Request,
    RequestId,
    ValidationFact,
)
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.messaging import HOOK, Bus, KafkaSettings, ensure_topics
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.processes import free_port
from stovepipe.stages import project_ops
from stovepipe.storage import Store
from stovepipe.testing import until

Q = "mono/main"


class ScriptedFeed:
    """The event feed's two signals, driven by the test."""

    def __init__(self) -> None:
        self.observers: list[Callable[[str, str], None]] = []
        self.fresh = True
        self.told = 0

    def observe(self, observer: Callable[[str, str], None]) -> None:
        self.observers.append(observer)

    def caught_up(self, within_s: float) -> bool:
        return self.fresh

    def deliver(self, pipe: Pipeline) -> None:
        """Every hook event the pipeline published since the last call."""
        for event in pipe.hook_events[self.told :]:
            for observer in self.observers:
                observer(event.data.queue, event.data.project)
        self.told = len(pipe.hook_events)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(
    pipe: Pipeline, feed: ScriptedFeed | None, clock: Clock | None = None, **settings: float
) -> GateCache:
    return GateCache(
        pipe.store,
        pipe.ingester,
        feed,
        GateCacheSettings(**settings),
        clock=clock or Clock(),
    )


async def _green_head(pipe: Pipeline, content: str) -> Request:
    pipe.repo().advance("main", {"src/a.py": content})
    result = await pipe.ingester.ingest(Q, "test")
    await pipe.drain()
    return result.request


def _count(store: Store, name: str) -> list[int]:
    """Count the calls of ``store.<name>`` (the real method still runs)."""
    calls = [0]
    real = getattr(store, name)

    async def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return await real(*args, **kwargs)

    setattr(store, name, counted)
    return calls


async def _assert_not_greener(store: Store, served: Bookmark, project: str = "") -> None:
    """What the cache served is a bookmark storage holds or held, green there, and its fact
    is storage's authoritative fact of that commit."""
    if project:
        row = await store.get_project_bookmark(Q, project)
        held = row.last_green_request_id if row else None
    else:
        state = await store.get_queue(Q)
        held = state.last_green_request_id if state else None
    if not served.uri:
        return
    assert held is not None
    assert RequestId.parse(served.request_id) <= RequestId.parse(held)
    stored = await store.get_fact(Q, served.uri, project)
    assert stored is not None and stored.green
    assert served.fact == stored


@pytest.fixture
def pipe(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q)])


async def test_a_miss_reads_one_row_and_a_hit_reads_nothing(pipe: Pipeline) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed)
    assert (await cache.bookmark(Q, "")).uri == ""  # nothing green yet: not cached as green
    first = await _green_head(pipe, "1")
    feed.deliver(pipe)
    rows, facts = _count(pipe.store, "get_queue"), _count(pipe.store, "get_fact")
    served = await cache.bookmark(Q, "")
    assert served.request_id == first.id and served.uri == first.uri
    assert (rows[0], facts[0]) == (1, 1)
    for _ in range(5):
        assert await cache.bookmark(Q, "") == served
    assert (rows[0], facts[0]) == (1, 1)
    feed.deliver(pipe)
    cache.invalidate(Q, "")  # the bookmark did not move: its green fact is not read again
    assert await cache.bookmark(Q, "") == served
    assert (rows[0], facts[0]) == (2, 1)
    await _assert_not_greener(pipe.store, served)


async def test_a_moved_bookmark_is_served_once_its_event_arrives(pipe: Pipeline) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    await _green_head(pipe, "1")
    feed.deliver(pipe)
    old = await cache.bookmark(Q, "")
    newer = await _green_head(pipe, "2")
    lagging = await cache.bookmark(Q, "")  # event not delivered yet: the older green, no newer
    assert lagging == old
    await _assert_not_greener(pipe.store, lagging)
    feed.deliver(pipe)
    assert (await cache.bookmark(Q, "")).request_id == newer.id


async def test_a_read_that_raced_an_event_does_not_install_the_older_bookmark(
    pipe: Pipeline,
) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    first = await _green_head(pipe, "1")
    feed.deliver(pipe)
    read_done, release = asyncio.Event(), asyncio.Event()
    real = pipe.store.get_queue

    async def paused(name: str) -> QueueState | None:
        found = await real(name)
        read_done.set()
        await release.wait()
        return found

    pipe.store.get_queue = paused  # type: ignore[method-assign]
    racing = asyncio.create_task(cache.bookmark(Q, ""))
    await asyncio.wait_for(read_done.wait(), 30)
    pipe.store.get_queue = real  # type: ignore[method-assign]
    second = await _green_head(pipe, "2")  # record moves the bookmark while the read is out
    feed.deliver(pipe)
    release.set()
    assert (await racing).request_id == first.id  # what storage held when it was read
    assert (await cache.bookmark(Q, "")).request_id == second.id


async def test_revalidation_never_displaces_the_green_fact_served(pipe: Pipeline) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    green = await _green_head(pipe, "1")
    feed.deliver(pipe)
    served = await cache.bookmark(Q, "")
    with pytest.raises(Refused):  # green is final: what the cache keeps cannot be undone
        await pipe.revalidator.revalidate(Q, green.uri, flaky=True, reason="test")
    assert await cache.bookmark(Q, "") == served
    # A red head re-validated green takes the bookmark: seen once its event arrives.
    pipe.repo().advance("main", {"src/a.py": "2"})
    red = (await pipe.ingester.ingest(Q, "test")).request
    pipe.runner.script(red.uri, Outcome.fail("unit"))
    await pipe.drain()
    feed.deliver(pipe)
    assert (await cache.bookmark(Q, "")).request_id == green.id
    pipe.runner.script(red.uri, Outcome.succeed())
    await pipe.revalidator.revalidate(Q, red.uri, flaky=True, reason="flake")
    await pipe.drain()
    feed.deliver(pipe)
    now = await cache.bookmark(Q, "")
    assert now.uri == red.uri and now.fact is not None and now.fact.green
    await _assert_not_greener(pipe.store, now)


async def test_while_the_feed_is_behind_or_down_every_call_reads_storage(
    pipe: Pipeline,
) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    await _green_head(pipe, "1")
    feed.fresh = False
    rows = _count(pipe.store, "get_queue")
    await cache.bookmark(Q, "")
    await cache.bookmark(Q, "")
    assert rows[0] == 2
    newer = await _green_head(pipe, "2")  # its event never reaches the cache
    assert (await cache.bookmark(Q, "")).request_id == newer.id
    assert cache.hits == 0


async def test_without_a_feed_nothing_is_served_from_memory(pipe: Pipeline) -> None:
    cache = _cache(pipe, None)
    await _green_head(pipe, "1")
    await cache.bookmark(Q, "")
    newer = await _green_head(pipe, "2")
    assert (await cache.bookmark(Q, "")).request_id == newer.id and cache.hits == 0


async def test_a_lost_event_costs_at_most_max_age(pipe: Pipeline) -> None:
    feed, clock = ScriptedFeed(), Clock()
    cache = _cache(pipe, feed, clock, max_age_s=2.0)
    await _green_head(pipe, "1")
    old = await cache.bookmark(Q, "")
    newer = await _green_head(pipe, "2")  # its event is lost
    clock.now += 1.9
    assert await cache.bookmark(Q, "") == old
    clock.now += 0.2
    assert (await cache.bookmark(Q, "")).request_id == newer.id


async def test_project_bookmarks_are_cached_and_dropped_per_project(pipe: Pipeline) -> None:
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    store = pipe.store
    whole = await _green_head(pipe, "1")
    feed.deliver(pipe)
    for n, project in ((1, "web"), (2, "web"), (1, "lib")):
        await store.ensure_project_bookmark(Q, project)
        uri = f"{whole.uri}-{project}-{n}"
        request_id = f"request/{Q}/{n}"
        await store.create_fact(_fact(uri, project, request_id))
        if (n, project) != (2, "web"):
            await project_ops.advance_bookmark(store, Q, project, request_id, uri, _now)
            continue
        assert (await cache.bookmark(Q, "web")).request_id == f"request/{Q}/1"
        await project_ops.advance_bookmark(store, Q, project, request_id, uri, _now)
        lib_rows = _count(store, "get_project_bookmark")
        cache.invalidate(Q, "lib")  # another project's event leaves web's entry alone
        assert (await cache.bookmark(Q, "web")).request_id == f"request/{Q}/1"
        assert lib_rows[0] == 0
        cache.invalidate(Q, "web")
        assert (await cache.bookmark(Q, "web")).request_id == request_id
    assert (await cache.bookmark(Q, "lib")).request_id == f"request/{Q}/1"
    assert (await cache.bookmark(Q, "")).request_id == whole.id
    for project in ("web", "lib", ""):
        await _assert_not_greener(store, await cache.bookmark(Q, project), project)


async def test_a_plain_answer_uses_a_recent_head_and_on_branch_resolves_it(
    pipe: Pipeline,
) -> None:
    clock = Clock()
    cache = _cache(pipe, ScriptedFeed(), clock, head_max_age_s=1.0)
    base = pipe.repo().advance("main", {"src/a.py": "base"})
    kept = await _green_head(pipe, "kept")
    heads, asked = _count_calls(pipe, "head"), _count_calls(pipe, "on_branch")
    head = await cache.head(Q, fresh=False)
    assert await cache.ancestry(Q, kept.uri, head) is Ancestry.ANCESTOR
    assert await cache.ancestry(Q, kept.uri, head) is Ancestry.ANCESTOR
    assert (heads[0], asked[0]) == (1, 1)  # two commits' ancestry never changes
    pipe.repo().force_push("main", base)  # kept is off the branch from now on
    pipe.repo().advance("main", {"src/b.py": "rewritten"})
    assert await cache.head(Q, fresh=False) == head  # within head_max_age_s
    rewritten = await cache.head(Q, fresh=True)
    assert rewritten != head
    assert await cache.ancestry(Q, kept.uri, rewritten) is Ancestry.NOT_ANCESTOR
    clock.now += 1.1
    pipe.repo().advance("main", {"src/b.py": "later"})
    assert await cache.head(Q, fresh=False) not in (head, rewritten)


async def test_concurrent_readers_never_see_a_bookmark_greener_than_storage(
    pipe: Pipeline,
) -> None:
    """Readers hammer the cache while record moves the bookmark, commits are re-validated
    (green and red) and the branch is rewritten; events arrive late, in bursts or not at
    all. Every answer must be a bookmark storage held, green there, with storage's fact."""
    feed = ScriptedFeed()
    cache = _cache(pipe, feed, max_age_s=60)
    rng = random.Random(14)
    answers: list[Bookmark] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            served = await cache.bookmark(Q, "")
            await _assert_not_greener(pipe.store, served)
            answers.append(served)
            await asyncio.sleep(0)

    async def writer() -> None:
        heads: list[Request] = []
        for step in range(12):
            head = await _green_head(pipe, f"step {step}")
            heads.append(head)
            action = rng.choice(["deliver", "late", "lose", "revalidate", "rewrite"])
            if action == "deliver":
                feed.deliver(pipe)
            elif action == "lose":
                feed.told = len(pipe.hook_events)
            elif action == "revalidate":  # a red head turns green on its second attempt
                pipe.repo().advance("main", {"src/a.py": f"flaky {step}"})
                red = (await pipe.ingester.ingest(Q, "test")).request
                pipe.runner.script(red.uri, Outcome.fail("unit"))
                await pipe.drain()
                pipe.runner.script(red.uri, Outcome.succeed())
                await pipe.revalidator.revalidate(Q, red.uri, flaky=True, reason="race")
                await pipe.drain()
                if rng.random() < 0.5:
                    feed.deliver(pipe)
            elif action == "rewrite":
                pipe.repo().force_push("main", _sha(rng.choice(heads).uri))
            feed.fresh = rng.random() > 0.2
            await asyncio.sleep(0)
        stop.set()

    await asyncio.wait_for(asyncio.gather(writer(), *(reader() for _ in range(8))), 300)
    feed.fresh = True
    feed.deliver(pipe)
    state = await pipe.store.get_queue(Q)
    assert state is not None
    assert (await cache.bookmark(Q, "")).request_id == state.last_green_request_id
    assert answers and cache.hits > 0 and cache.misses > 0


# The real event feed on the real broker.


async def test_the_event_feed_drops_the_entry_when_record_publishes_its_event(
    kafka_settings: KafkaSettings, store: Store
) -> None:
    await ensure_topics(kafka_settings, [HOOK.name])
    feed = EventFeed(kafka_settings, store)
    bus = Bus(kafka_settings)
    await bus.start()
    try:
        pipe = Pipeline(store, [queue_config(Q)])
        cache = GateCache(store, pipe.ingester, feed, GateCacheSettings(max_age_s=60))
        await _green_head(pipe, "1")
        await until(lambda: feed.caught_up(1.0), what="the feed caught up", timeout_s=60)
        await cache.bookmark(Q, "")
        hits = cache.hits
        await cache.bookmark(Q, "")
        assert cache.hits == hits + 1
        newer = await _green_head(pipe, "2")
        for event in pipe.hook_events[-2:]:  # record's events, as record publishes them
            await bus.publish(HOOK.name, event)

        async def moved() -> Bookmark | None:
            served = await cache.bookmark(Q, "")
            return served if served.request_id == newer.id else None

        await until(moved, what="the event dropped the cached bookmark", timeout_s=60)
    finally:
        await bus.stop()
        await feed.close()


async def test_with_the_broker_unreachable_every_call_reads_storage(
    kafka_settings: KafkaSettings, store: Store
) -> None:
    dead = dataclasses.replace(
        kafka_settings, bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=2000
    )
    feed = EventFeed(dead, store)
    try:
        pipe = Pipeline(store, [queue_config(Q)])
        cache = GateCache(store, pipe.ingester, feed, GateCacheSettings(max_age_s=60))
        await _green_head(pipe, "1")
        await cache.bookmark(Q, "")
        newer = await _green_head(pipe, "2")
        assert (await cache.bookmark(Q, "")).request_id == newer.id
        assert cache.hits == 0 and not feed.caught_up(60.0)
    finally:
        await feed.close()


def _count_calls(pipe: Pipeline, name: str) -> list[int]:
    calls = [0]
    real: Callable[..., Awaitable[object]] = getattr(pipe.ingester, name)

    async def counted(*args: object) -> object:
        calls[0] += 1
        return await real(*args)

    setattr(pipe.ingester, name, counted)
    return calls


def _fact(uri: str, project: str, request_id: str) -> ValidationFact:
    return ValidationFact(
        queue=Q,
        uri=uri,
        project=project,
        degree=GREEN,
        request_id=request_id,
        origin=FactOrigin.BUILD,
        created_at=datetime.now(UTC),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _sha(uri: str) -> str:
    return uri.rsplit("@", 1)[-1]


async def test_a_failed_head_is_not_asked_again_within_max_age_except_on_branch(
    pipe: Pipeline,
) -> None:
    clock = Clock()
    cache = _cache(pipe, ScriptedFeed(), clock, head_max_age_s=1.0)
    asked = [0]

    async def down(queue: str) -> str:
        asked[0] += 1
        raise ConnectionError("SourceControl is down")

    pipe.ingester.head = down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await cache.head(Q, fresh=False)
    for _ in range(3):
        with pytest.raises(HeadUnknown):
            await cache.head(Q, fresh=False)
    assert asked[0] == 1
    with pytest.raises(ConnectionError):  # on_branch asks every time
        await cache.head(Q, fresh=True)
    clock.now += 1.1
    with pytest.raises(ConnectionError):
        await cache.head(Q, fresh=False)
    assert asked[0] == 3
