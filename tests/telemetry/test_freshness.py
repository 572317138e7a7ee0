"""The staleness objective per Queue, judged on real storage with a fake clock: one
``queue.stale`` event per episode, one ``queue.fresh`` at its end, gauges throughout."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from harness.db_round_trips import counting
from harness.stages import Pipeline, queue_config
from stovepipe.messaging import HOOK, encode
from stovepipe.storage import Store
from stovepipe.storage.hook_deliveries import HookDelivery, HookDeliveryStatus
from stovepipe.telemetry.freshness import EVENT_FRESH, EVENT_STALE, FreshnessMonitor, assess_all
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.postgres

Q = "fresh/main"


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _events(pipe: Pipeline) -> list[topics_pb2.HookEvent]:
    """Published to the hook topic and not yet drained."""
    return [m for t, m in pipe.outbox.messages if t == HOOK.name]  # type: ignore[misc]


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"queue": Q})


async def _head(pipe: Pipeline, n: int) -> str:
    pipe.repo().advance("main", {"src/a.py": str(n)}, title=f"change {n}")
    return (await pipe.ingester.ingest(Q, "test")).request.id


async def test_one_stale_event_per_episode_and_one_fresh_when_it_recovers(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q, staleness={"max_age": "1h", "max_commits": 2})])
    await _head(pipe, 1)
    await pipe.drain()
    green = await store.get_queue(Q)
    assert green is not None and green.last_green_request_id
    clock = FakeClock(pipe.clock.now)
    monitor = FreshnessMonitor(pipe.config, store, pipe.outbox, clock=clock)
    other_replica = FreshnessMonitor(pipe.config, store, pipe.outbox, clock=clock)

    assert await monitor.check() == []  # up to date: fresh, nothing to announce
    assert _gauge("stovepipe_queue_stale") == 0.0
    assert _gauge("stovepipe_queue_commits_since_last_green") == 0.0

    waiting = await _head(pipe, 2)  # reported, not yet built
    clock.now += timedelta(minutes=30)
    assert await monitor.check() == []  # one commit behind for 30 min: within the objective
    assert _gauge("stovepipe_queue_commits_since_last_green") == 1.0

    clock.now += timedelta(hours=1)
    stale = await monitor.check()
    assert [e.type for e in stale] == [EVENT_STALE]
    event = stale[0]
    assert event.staleness.stale and event.staleness.commits_since_last_green == 1
    assert event.staleness.last_green_age_seconds > 3600
    assert event.staleness.max_age_seconds == 3600 and event.staleness.max_commits == 2
    assert event.data.queue == Q and event.data.request_id == green.last_green_request_id
    encode(HOOK, event, 1 << 20)  # a valid record of the hook topic (ids, key)
    assert _gauge("stovepipe_queue_stale") == 1.0

    clock.now += timedelta(hours=5)
    assert await monitor.check() == []  # still the same episode
    assert await other_replica.check() == []  # and another replica does not repeat it

    await pipe.drain()  # the waiting commit gets its verdict: green again
    assert (await store.get_queue(Q)).last_green_request_id == waiting  # type: ignore[union-attr]
    fresh = await other_replica.check()
    assert [e.type for e in fresh] == [EVENT_FRESH] and not fresh[0].staleness.stale
    assert await monitor.check() == []
    assert _gauge("stovepipe_queue_stale") == 0.0

    for n in range(3, 6):  # three commits behind, more than max_commits: stale at once
        await _head(pipe, n)
    second = await monitor.check()
    assert [e.type for e in second] == [EVENT_STALE]
    assert second[0].staleness.commits_since_last_green == 3
    assert second[0].id != event.id
    freshness = (EVENT_STALE, EVENT_FRESH)  # the verdicts' own events travel there too
    delivered = [e.type for e in pipe.hook_events if e.type in freshness]
    published = delivered + [e.type for e in _events(pipe) if e.type in freshness]
    assert published == [EVENT_STALE, EVENT_FRESH, EVENT_STALE]
    states = await store.list_staleness()
    assert states[Q][0] is True and states[Q][1] == clock.now


async def test_a_queue_without_an_objective_gets_gauges_and_no_events(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q)])
    await _head(pipe, 1)
    await _head(pipe, 2)
    for n, status in enumerate(["failed", "failed", "delivered", "pending"]):
        await store.create_hook_delivery(
            HookDelivery(
                Q, f"event-{n}", "chat", HookDeliveryStatus(status), 1, pipe.clock(), pipe.clock()
            )
        )
    clock = FakeClock(pipe.clock.now + timedelta(days=30))
    assert await FreshnessMonitor(pipe.config, store, pipe.outbox, clock=clock).check() == []
    assert _gauge("stovepipe_queue_commits_since_last_green") == 2.0
    age = _gauge("stovepipe_queue_last_green_age_seconds")
    assert age is not None and age >= timedelta(days=30).total_seconds()
    assert await store.list_staleness() == {}
    assert (
        REGISTRY.get_sample_value("stovepipe_hook_deliveries", {"queue": Q, "state": "failed"}) == 2
    )
    for state in ("delivered", "pending"):
        labels = {"queue": Q, "state": state}
        assert REGISTRY.get_sample_value("stovepipe_hook_deliveries", labels) == 1


async def test_one_pass_reads_all_queues_in_two_statements_and_agrees_with_each_alone(
    store: Store,
) -> None:
    """The monitor judges every configured Queue on a timer: per-Queue reads made a
    thousand Queues cost four thousand reads a pass. The batched read must say what
    the per-Queue reads say, for a Queue that is green with heads waiting, one that
    never had a green head, and one never reported."""
    green, waiting, silent = "fresh/green", "fresh/waiting", "fresh/silent"
    pipe = Pipeline(
        store,
        [queue_config(n, promotion_ref=f"verified-{n[6:]}") for n in (green, waiting, silent)],
    )
    pipe.repo().advance("main", {"src/a.py": "1"}, title="one")
    await pipe.ingester.ingest(green, "test")
    await pipe.drain()
    for n in (2, 3):
        pipe.clock.now += timedelta(minutes=1)
        pipe.repo().advance("main", {"src/a.py": str(n)}, title=f"change {n}")
        await pipe.ingester.ingest(green, "test")
        await pipe.ingester.ingest(waiting, "test")

    expected = {}
    for name in (green, waiting, silent):
        state = await store.get_queue(name)
        last = state.last_green_request_id if state else None
        green_request = await store.get_request(last) if last else None
        green_at = green_request.created_at if green_request else None
        expected[name] = (
            state,
            green_at,
            await store.count_requests_after(name, green_at),
            await store.first_request_at(name),
        )
    assert expected[green][1] is not None and expected[green][2] == 2  # the fixture is as meant
    assert expected[waiting][1] is None and expected[waiting][2] == 2
    assert expected[silent] == (None, None, 0, None)

    with counting(store) as trips:
        standings = await store.standings([green, waiting, silent])
    assert standings == expected
    assert trips.transactions == 2 and trips.by_verb["SELECT"] == 2
    now = pipe.clock.now + timedelta(hours=1)
    judged = await assess_all(store, [green, waiting, silent], now)
    first_at = expected[waiting][3]
    assert first_at is not None
    assert judged[waiting].last_green_age_s == (now - first_at).total_seconds()
    assert judged[silent].last_green_age_s is None and judged[silent].commits_since_last_green == 0
