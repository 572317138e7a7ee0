"""Three replicas of every stage on the real broker and PostgreSQL, replicas killed at random.

What a scaled-out production deployment does (deploy/kubernetes/overlays/prod
runs up to three replicas of a stage on three partitions): the consumers of a
stage share a group, a replica that dies with kill -9 is noticed only after
the session timeout, and its partitions move to the others while the keeper
(the orchestrator) starts it again. Heads keep coming while replicas die.

Afterwards every head is terminal with its true verdict, the books balance
(``settle``), the safety invariants held throughout (``watching``), and
nothing was applied twice: at most one build per Request in storage, each of
them the runner's one build for that Request's key, and one fact per decided
Request.

Size, for two CI cores: 21 worker processes (7 stages x 3) plus the API, both
extension servers, Tansu and PostgreSQL; ten heads over two Queues; five
kills drawn from a fixed seed. It takes about 50 s on a loaded machine, most
of it the stack's start and the consumer-group session timeouts.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.fault_checks import assert_true_verdicts, commit_of, settle, watching
from harness.fault_stack import FaultStack, fault_stack
from harness.postgres import PostgresCluster
from stovepipe.storage import create_engine
from stovepipe.storage.tables import builds

REPLICAS = 3
HEADS = 10
KILL_EVERY = 2  # heads
SEED = 20261130


@pytest.fixture
async def scaled(tmp_path: Path, fault_postgres: PostgresCluster) -> AsyncIterator[FaultStack]:
    async with fault_stack(
        tmp_path, fault_postgres, replicas=REPLICAS, partitions=REPLICAS
    ) as running:
        yield running


@pytest.mark.timeout(300)
async def test_three_replicas_of_every_stage_survive_random_kill9(scaled: FaultStack) -> None:
    await scaled.until_ready(timeout_s=180)  # every replica holds its share of partitions
    rng = random.Random(SEED)
    ids: list[str] = []
    killed: Counter[str] = Counter()
    async with watching(scaled) as watch:
        for head in range(HEADS):
            queue = scaled.queue_names[head % len(scaled.queue_names)]
            ids.append(await scaled.push_and_ingest(queue, green=rng.random() < 0.7))
            if head % KILL_EVERY == KILL_EVERY - 1:
                victim = rng.choice(scaled.workers)
                await scaled.kill(victim)
                killed[victim] += 1
        await settle(scaled, watch, ids, timeout_s=180)
        await assert_true_verdicts(scaled, watch, ids)
    for victim, times in killed.items():
        assert scaled.restarts[victim] >= times, victim
    await _assert_applied_once(scaled, ids)


async def _assert_applied_once(stack: FaultStack, ids: list[str]) -> None:
    assert stack.store is not None
    runner_builds = {}
    for path in (stack.root / "builds" / "records").glob("*.json"):
        record = json.loads(path.read_text())
        runner_builds[record["build_id"]] = record["spec"]["idempotency_key"]
    keys = Counter(runner_builds.values())
    assert [key for key, n in keys.items() if n > 1] == [], "one runner build per key"
    engine = create_engine(stack.database_url)
    try:
        async with engine.connect() as connection:
            stored = (await connection.execute(select(builds))).mappings().all()
    finally:
        await engine.dispose()
    per_request = Counter(row["request_id"] for row in stored)
    assert [r for r, n in per_request.items() if n > 1] == [], "one build per Request"
    for row in stored:
        assert row["build_id"] in runner_builds, f"{row['build_id']} was never triggered"
        assert runner_builds[row["build_id"]].startswith(f"{row['request_id']}#1#")
    decided = 0
    for request_id in ids:
        request = await stack.store.get_request(request_id)
        assert request is not None
        attempts = await stack.store.list_fact_attempts(request.queue, request.uri, "")
        if request.state.value == "superseded":
            continue
        decided += 1
        assert [fact.attempt for fact in attempts] == [1], (request_id, commit_of(request.uri))
    assert decided >= len(stack.queue_names)  # at least each Queue's last head
