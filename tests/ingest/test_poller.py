"""The built-in poller on the real broker, PostgreSQL and git extension."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.ingress import Ingress, commit, ingress_stack, make_repo, queue
from stovepipe.domain import Request
from stovepipe.storage.poll_leases import PollLeases
from stovepipe.storage.tables import poll_leases, queues
from stovepipe.testing import until
from stovepipe.v1 import types_pb2

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


async def _lease_row(live: Ingress, name: str) -> dict[str, object]:
    async with live.store.engine.connect() as conn:
        row = (
            (await conn.execute(select(poll_leases).where(poll_leases.c.queue == name)))
            .mappings()
            .one()
        )
    return dict(row)


async def _queue_version(live: Ingress, name: str) -> int:
    async with live.store.engine.connect() as conn:
        value = (
            await conn.execute(select(queues.c.version).where(queues.c.queue == name))
        ).scalar_one()
    return int(value)


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_commits_pushed_without_ingest_are_validated_on_the_next_poll(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    repo = make_repo(tmp_path / "app")
    qs = [queue("app/main", repo.path, poll={"every": 1})]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        poller = live.poller()
        async with live.running(poller):
            # the start-up poll resolved the head and ingested it, with no Ingest call
            first = (await live.requests_of("app/main"))[0]
            assert first.trigger == "poll"
            assert first.uri.endswith(repo.git("rev-parse", "HEAD"))
            done = await live.wait_terminal(first.id)
            assert done.state == types_pb2.REQUEST_STATE_SUCCEEDED

            sha = commit(repo, green=False)
            claims_before = len(poller.stats.claims)

            async def ingested() -> list[Request]:
                return [r for r in await live.requests_of("app/main") if r.uri.endswith(sha)]

            (second,) = await until(
                ingested, timeout_s=60, what="the new commit ingested by the poller"
            )
            # within two poll intervals: at most the tick in flight and the next one
            assert len(poller.stats.claims) - claims_before <= 2
            assert second.trigger == "poll"
            verdict = await live.wait_terminal(second.id)
            assert verdict.state == types_pb2.REQUEST_STATE_FAILED  # broken, and validated


async def test_an_unmoved_head_costs_one_resolve_per_tick_and_no_other_write(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    repo = make_repo(tmp_path / "app")
    qs = [queue("app/main", repo.path, poll={"every": 1})]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        poller = live.poller()
        async with live.running(poller):
            (request,) = await live.requests_of("app/main")
            await live.wait_terminal(request.id)
            leases = PollLeases(live.store.engine)
            await until(
                lambda: _is(leases.head_of("app/main"), request.uri),
                timeout_s=60,
                what="the head recorded",
            )
            version = await _queue_version(live, "app/main")
            lease = await _lease_row(live, "app/main")
            claims = len(poller.stats.claims)
            resolves = live.resolves.calls["app/main"]
            await until(
                lambda: len(poller.stats.claims) >= claims + 3,
                timeout_s=60,
                what="three more ticks",
            )
            new_claims = len(poller.stats.claims) - claims
            new_resolves = live.resolves.calls["app/main"] - resolves
        assert new_resolves in (new_claims, new_claims + 1)  # one per tick (+ one in flight)
        assert [r.id for r in await live.requests_of("app/main")] == [request.id]
        assert await _queue_version(live, "app/main") == version
        after = await _lease_row(live, "app/main")
        assert after["head_uri"] == lease["head_uri"] == request.uri
        assert after["failures"] == 0
        assert poller.stats.ingests == 1


async def test_three_replicas_never_poll_a_queue_twice_in_one_tick(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    repo = make_repo(tmp_path / "app")
    qs = [queue(f"app/q{i}", repo.path, poll={"every": 1}) for i in range(3)]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        replicas = [live.poller(holder=f"replica-{i}") for i in range(3)]
        async with live.running(*replicas):
            await until(
                lambda: sum(len(r.stats.claims) for r in replicas) >= 3 * 6,
                timeout_s=90,
                what="six ticks each",
            )
        per_tick = Counter(claim for r in replicas for claim in r.stats.claims)
        assert per_tick and max(per_tick.values()) == 1
        assert sum(live.resolves.calls.values()) == sum(per_tick.values())
        assert {name for name, _ in per_tick} == {"app/q0", "app/q1", "app/q2"}
        skipped = sum(r.stats.skipped for r in replicas)
        assert skipped > 0  # the other replicas did try, and were refused by the lease


async def test_a_broken_repository_backs_off_without_stalling_the_others(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    repo = make_repo(tmp_path / "app")
    missing = make_repo(tmp_path / "gone")
    qs = [
        queue("app/main", repo.path, poll={"every": 1}),
        queue("gone/main", missing.path, poll={"every": 1}),
    ]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        shutil.rmtree(missing.path)
        poller = live.poller(backoff_initial_s=1.0)
        async with live.running(poller):
            await until(
                lambda: live.resolves.calls["app/main"] >= 16,
                timeout_s=120,
                what="16 polls of the healthy queue",
            )
        row = await _lease_row(live, "gone/main")
        assert int(str(row["failures"])) >= 3  # 1 s, 2 s, 4 s, 8 s apart (with jitter)
        assert row["last_error"]
        assert live.resolves.calls["gone/main"] < live.resolves.calls["app/main"] / 2
        assert await live.requests_of("gone/main") == []
        assert await live.requests_of("app/main")


async def test_paused_queues_are_not_polled_and_schedules_ingest_at_start_up(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    repo = make_repo(tmp_path / "app")
    qs = [
        queue("app/nightly", repo.path, poll={"schedule": "0 3 * * *", "timezone": "Europe/Paris"}),
        queue("app/paused", repo.path, poll={"every": 1, "enabled": False}),
    ]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        poller = live.poller()
        assert poller.queue_names == ["app/nightly"]
        async with live.running(poller):
            (nightly,) = await live.requests_of("app/nightly")
        assert nightly.trigger == "schedule"
        assert live.resolves.calls["app/paused"] == 0
        assert await live.requests_of("app/paused") == []
        assert await PollLeases(live.store.engine).head_of("app/nightly") == nightly.uri
