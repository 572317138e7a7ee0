"""Scale-out at full size: three replicas of every stage, replicas killed while heads flow.

What a scaled-out production deployment does (``doc/deploy.md``: up to as many
replicas of a stage as its topics have partitions): the replicas of a stage
share a consumer group, a replica that dies with kill -9 is noticed only after
the session timeout, and its partitions move to the others while the
orchestrator (the stack's keeper) starts it again.

The run: 3 replicas of each of the 7 stages as separate processes, topics of 6
partitions on the real broker, PostgreSQL, 600 heads over 60 Queues pushed at a
steady pace, and every few seconds a random replica killed with SIGKILL and
kept down until the other replicas of its stage hold all of its stage's
partitions (read from the replicas' assignment log lines), then brought back.
At most one replica is held down at a time, as a PodDisruptionBudget would allow.

Afterwards: every head is terminal with its true verdict and the books balance
(``settle``), the fault suite's safety invariants held throughout
(``watching``), and no effect was applied twice: one runner build per admitted
Request attempt, each build in storage one the runner made for that Request,
one fact per attempt.

The extensions are the in-memory ones of :mod:`harness.noop_extensions`: what
is under test is the pipeline's processes, not git or a build; with them 600
heads cost about as much as the stack's start. ``benchmarks/scale_out.py``
times the same run with one and with three replicas per stage.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.consumer_groups import Takeover, stage_of, survivors_took_over
from harness.fault_checks import assert_true_verdicts, commit_of, settle, watching
from harness.fault_stack import FaultStack, fault_stack
from harness.noop_extensions import NoopExtensions, noop_extensions
from harness.postgres import PostgresCluster
from stovepipe.storage import create_engine
from stovepipe.storage.tables import builds

REPLICAS = 3
PARTITIONS = 6
QUEUES = 60
HEADS = 600
PUSH_RATE = 12.0
"""Heads per second: 600 heads over some 50 s, long enough for several kills."""
MIN_KILLS = 3
"""Kills made even if the push is over before them (see ``_kill_while``)."""
KILL_EVERY_S = 1.0
"""Pause between one replica brought back and the next kill (a kill then takes the
session timeout and a rebalance before its replica may come back)."""
TAKEOVER_S = 240.0
"""Bound for the survivors to hold a killed replica's partitions: a session timeout and
a rebalance, which waits for every survivor to rejoin (a survivor busy in a handler on
a loaded machine may take long). Typically a few seconds; the run reports each."""
INGEST_S = 300.0
"""Bound for one head's ingest, retried while it fails: 30 worker processes and the
API share the machine's cores, and on a loaded machine an Ingest call may take
seconds."""
SEED = 20261130
GREEN = 0.7
STALE_AFTER_S = 300.0
"""The sweeper's window, production's default. With a short one (the fault suite's 4 s,
even 60 s) every verdict still queued behind hundreds of others is re-published by every
sweeper replica on every pass, and the duplicates slow the record stage further."""


@dataclass
class Run:
    """What the run did, for the assertions and the report."""

    ids: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    takeovers: list[Takeover] = field(default_factory=list)
    takeover_s: list[float] = field(default_factory=list)


@pytest.fixture
async def scaled(
    tmp_path: Path, fault_postgres: PostgresCluster, fault_template: str
) -> AsyncIterator[tuple[FaultStack, NoopExtensions]]:
    async with (
        noop_extensions() as ext,
        fault_stack(
            tmp_path,
            fault_postgres,
            template=fault_template,
            queues=QUEUES,
            replicas=REPLICAS,
            partitions=PARTITIONS,
            noop=ext,
            sweeper_stale_after_s=STALE_AFTER_S,
        ) as stack,
    ):
        yield stack, ext


async def _push(stack: FaultStack, run: Run, rng: random.Random) -> None:
    """HEADS heads, round-robin over the Queues, at PUSH_RATE (a few in flight at once)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    slots = asyncio.Semaphore(8)
    queues = stack.queue_names
    verdicts = [rng.random() < GREEN for _ in range(HEADS)]

    async def one(index: int) -> str:
        async with slots:
            queue = queues[index % len(queues)]
            return await stack.push_and_ingest(queue, verdicts[index], timeout_s=INGEST_S)

    tasks = []
    for index in range(HEADS):
        await asyncio.sleep(max(0.0, started + index / PUSH_RATE - loop.time()))
        tasks.append(asyncio.create_task(one(index)))
    run.ids.extend(await asyncio.gather(*tasks))


async def _kill_while(stack: FaultStack, run: Run, pushing: asyncio.Task[None]) -> None:
    """Kill a random replica every KILL_EVERY_S until the pushing is over, and at least
    MIN_KILLS times: on a loaded machine a takeover may outlast the whole push, and the
    run must still have killed enough to prove anything."""
    rng = random.Random(SEED)
    while not pushing.done() or sum(run.kills.values()) < MIN_KILLS:
        await asyncio.sleep(KILL_EVERY_S)
        victim = rng.choice(stack.workers)
        await stack.take_down(victim)
        run.kills[victim] += 1
        down = time.monotonic()
        run.takeovers.append(await survivors_took_over(stack, victim, TAKEOVER_S))
        run.takeover_s.append(time.monotonic() - down)
        await stack.bring_up(victim)


@pytest.mark.timeout(1800)
async def test_600_heads_on_three_replicas_of_every_stage_with_replicas_killed(
    scaled: tuple[FaultStack, NoopExtensions],
) -> None:
    stack, ext = scaled
    await stack.until_ready(timeout_s=240)  # every replica holds its share of partitions
    run = Run()
    started = time.monotonic()
    async with watching(stack, every_s=5.0) as watch:
        pushing = asyncio.create_task(_push(stack, run, random.Random(SEED)))
        await _kill_while(stack, run, pushing)
        await pushing
        await settle(stack, watch, run.ids, timeout_s=900)
        flowed = time.monotonic() - started
        await assert_true_verdicts(stack, watch, run.ids)

    grouped = [t for t in run.takeovers if t.lost]
    moved_s = sorted(s for t, s in zip(run.takeovers, run.takeover_s, strict=True) if t.lost)
    print(
        f"\n[scale-out] {HEADS} heads over {QUEUES} Queues settled in {flowed:.0f}s, "
        f"{REPLICAS} replicas x {len({stage_of(w) for w in stack.workers})} stages, "
        f"{PARTITIONS} partitions; {sum(run.kills.values())} kills "
        f"({', '.join(f'{w} x{n}' for w, n in sorted(run.kills.items()))}); "
        f"{len(grouped)} moved partitions to the survivors, in "
        f"{moved_s[0] if moved_s else 0:.1f}s (min) / "
        f"{moved_s[len(moved_s) // 2] if moved_s else 0:.1f}s (median) / "
        f"{moved_s[-1] if moved_s else 0:.1f}s (max); "
        f"{len(ext.build_runner.builds)} builds"
    )
    assert len(run.ids) == HEADS
    assert sum(run.kills.values()) >= MIN_KILLS, run.kills
    for victim, times in run.kills.items():  # each kill was followed by a new start
        assert stack.children[victim].starts >= times + 1, victim
    assert grouped, "no consumer-group stage was ever killed"
    for takeover in grouped:
        moved = {tp for held in takeover.lost.values() for tp in held}
        taken = {tp for peer in takeover.after.values() for held in peer.values() for tp in held}
        assert moved <= taken, takeover  # what the victim held, its peers now hold
    await _assert_applied_once(stack, ext, run.ids)


async def _assert_applied_once(stack: FaultStack, ext: NoopExtensions, ids: list[str]) -> None:
    """One build per admitted Request attempt, each stored build the runner's; one fact
    per attempt."""
    assert stack.store is not None
    made = {b.build_id: b for b in ext.build_runner.builds}
    keys = Counter(b.key for b in made.values())
    assert [k for k, n in keys.items() if n > 1] == [], "one runner build per key"
    per_attempt = Counter(b.key.rsplit("#", 1)[0] for b in made.values())
    assert [k for k, n in per_attempt.items() if n > 1] == [], "one build per Request attempt"
    engine = create_engine(stack.database_url)
    try:
        async with engine.connect() as connection:
            stored = (await connection.execute(select(builds))).mappings().all()
    finally:
        await engine.dispose()
    for row in stored:
        build = made.get(row["build_id"])
        assert build is not None, f"{row['build_id']} was never triggered"
        assert build.key.startswith(f"{row['request_id']}#"), (row, build)
    per_request = Counter(row["request_id"] for row in stored)
    for request_id, n in per_request.items():
        keys_of = {made[r["build_id"]].key for r in stored if r["request_id"] == request_id}
        assert n == len(keys_of), f"{request_id}: {n} builds stored for {len(keys_of)} attempts"
    decided = 0
    for request_id in ids:
        request = await stack.store.get_request(request_id)
        assert request is not None
        attempts = [
            f.attempt for f in await stack.store.list_fact_attempts(request.queue, request.uri, "")
        ]
        assert len(attempts) == len(set(attempts)), (request_id, attempts)
        if request.state.value != "superseded":
            decided += 1
            assert request.attempt in attempts, (request_id, commit_of(request.uri))
    assert decided >= len(stack.queue_names)  # at least each Queue's last head
