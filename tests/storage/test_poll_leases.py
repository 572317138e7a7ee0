"""Poll leases on both backends: one holder at a time, handover without a repeated tick,
release on stop, and the poller's use of them (a real database, a stand-in resolver)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from stovepipe.config import config_from_mapping
from stovepipe.runtime.poller import Poller, PollerTuning
from stovepipe.storage import Store
from stovepipe.storage.poll_leases import NEVER, Note, PollLeases, Taken
from stovepipe.testing import until

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def test_one_holder_at_a_time_and_takeover_after_expiry(store: Store) -> None:
    leases = PollLeases(store.engine)
    got, others = await leases.acquire(["a/main", "b/main"], "r1", now=T0, ttl_s=30)
    assert set(got) == {"a/main", "b/main"} and not others
    assert got["a/main"].previous_expiry == NEVER
    got2, others2 = await leases.acquire(["a/main"], "r2", now=T0 + timedelta(seconds=10), ttl_s=30)
    assert not got2 and others2["a/main"] == Taken("r1", T0 + timedelta(seconds=30))
    kept = await leases.renew("r1", ["a/main"], now=T0 + timedelta(seconds=20), ttl_s=30)
    assert kept == {"a/main"}
    # b/main was not renewed: after its expiry r2 takes it, knowing when r1's lease ended
    later = T0 + timedelta(seconds=31)
    got3, others3 = await leases.acquire(["a/main", "b/main"], "r2", now=later, ttl_s=30)
    assert set(got3) == {"b/main"} and set(others3) == {"a/main"}
    assert got3["b/main"].previous_expiry == T0 + timedelta(seconds=30)
    # r1 lost b/main: it can neither renew it nor write to it
    assert await leases.renew("r1", ["b/main"], now=later, ttl_s=30) == set()
    await leases.record("r1", {"b/main": Note("git+x#main@" + "1" * 40, 0, NEVER)})
    assert await leases.head_of("b/main") is None
    await leases.record("r2", {"b/main": Note("git+x#main@" + "2" * 40, 0, NEVER)})
    assert await leases.head_of("b/main") == "git+x#main@" + "2" * 40


async def test_a_released_lease_is_taken_at_once_and_polled_at_once(store: Store) -> None:
    leases = PollLeases(store.engine)
    await leases.acquire(["a/main"], "r1", now=T0, ttl_s=30)
    await leases.release("r1", ["a/main"], now=T0 + timedelta(seconds=1))
    got, _ = await leases.acquire(["a/main"], "r2", now=T0 + timedelta(seconds=2), ttl_s=30)
    assert got["a/main"].previous_expiry == NEVER  # a clean stop: the new holder polls now


async def test_replicas_share_queues_and_a_stopped_one_hands_them_over(store: Store) -> None:
    config = config_from_mapping(
        {
            "queues": [
                {
                    "name": f"q/{i}",
                    "source": {"repository": f"/srv/{i}"},
                    "build": {"targets": [{"name": "t", "command": "true"}]},
                    "poll": {"every": 0.5},
                }
                for i in range(4)
            ]
        }
    )
    calls: Counter[str] = Counter()

    async def resolve(queue: object, timeout_s: float) -> str:
        calls[str(getattr(queue, "name", ""))] += 1
        return "git+x#main@" + "a" * 40

    async def ingest(queue: object, head: str, trigger: str) -> None:
        return None

    tuning = PollerTuning(lease_ttl_s=3.0, handover_margin_s=0.5, jitter_max_s=0.01)

    def replica(name: str) -> Poller:
        return Poller(
            config.queues, PollLeases(store.engine), resolve, ingest, holder=name, tuning=tuning
        )

    async def started() -> None:
        return None

    first, second = replica("r1"), replica("r2")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running_first = asyncio.create_task(first.run(stop_first, started))
    await until(lambda: len(first.stats.claims) >= 4, timeout_s=30, what="r1 polling")
    running_second = asyncio.create_task(second.run(stop_second, started))
    await until(lambda: len(first.stats.claims) >= 16, timeout_s=60, what="r1 keeps polling")
    assert second.stats.claims == []  # r1 holds every Queue
    stop_first.set()
    await running_first
    await until(lambda: len(second.stats.claims) >= 8, timeout_s=60, what="r2 took over")
    stop_second.set()
    await running_second
    per_tick = Counter([*first.stats.claims, *second.stats.claims])
    assert max(per_tick.values()) == 1
    assert {name for name, _ in second.stats.claims} == {f"q/{i}" for i in range(4)}
    assert sum(calls.values()) == sum(per_tick.values())
