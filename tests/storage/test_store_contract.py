"""One storage contract, run on SQLite and PostgreSQL (``store[sqlite]`` / ``store[postgres]``)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from stovepipe.domain import (
    Build,
    BuildStatus,
    BuildStrategy,
    FactOrigin,
    RequestState,
    TargetOutcome,
    ValidationFact,
    transition,
)
from stovepipe.storage import AlreadyExists, Store, VersionMismatch

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"


def _fact(
    uri: str, degree: float = 0.0, request_id: str = "request/mono/main/1", at: datetime = NOW
) -> ValidationFact:
    return ValidationFact(
        queue=Q,
        uri=uri,
        project="",
        degree=degree,
        request_id=request_id,
        origin=FactOrigin.BUILD,
        created_at=at,
    )


async def test_queue_is_created_once_and_cas_protects_it(store: Store) -> None:
    first = await store.ensure_queue(Q)
    again = await store.ensure_queue(Q)
    assert first == again and first.version == 1 and first.in_flight_count == 0
    moved = await store.update_queue(first, first.with_slot_taken("request/mono/main/1", now=NOW))
    assert moved.version == 2 and moved.in_flight_count == 1
    with pytest.raises(VersionMismatch):
        await store.update_queue(
            first, first.evolve(now=NOW, latest_request_id="request/mono/main/9")
        )
    stored = await store.get_queue(Q)
    assert stored is not None and stored.slot_holders == ("request/mono/main/1",)
    assert stored.updated_at.tzinfo is not None


async def test_two_writers_on_one_version_exactly_one_wins(store: Store) -> None:
    base = await store.ensure_queue(Q)
    attempts = [
        store.update_queue(base, base.evolve(now=NOW, latest_request_id=f"request/mono/main/{i}"))
        for i in (1, 2)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(r, VersionMismatch) for r in results) == 1
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_counter_values_are_unique_under_concurrency(store: Store) -> None:
    values = await asyncio.gather(*(store.next_request_number(Q) for _ in range(50)))
    assert sorted(values) == list(range(1, 51))
    assert await store.next_request_number("other/q") == 1


async def test_fifty_concurrent_ingests_of_one_head_make_one_request(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_request(Q, "uri-a", trigger="poller", now=NOW) for _ in range(50))
    )
    ids = {r.id for r, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    assert len(await store.list_requests(Q)) == 1


async def test_request_create_dedup_and_cas(store: Store) -> None:
    r1, created1 = await store.create_request(Q, "u1", trigger="cli", now=NOW)
    r2, created2 = await store.create_request(Q, "u2", trigger="cli", now=NOW)
    again, created3 = await store.create_request(Q, "u1", trigger="poller", now=NOW)
    assert (created1, created2, created3) == (True, True, False)
    assert again == r1 and r1.request_id.n < r2.request_id.n
    assert await store.find_request(Q, "u2") == r2
    admitted = transition(
        r1, RequestState.PROCESSING, now=NOW, build_strategy=BuildStrategy.FULL, slot_held=True
    )
    assert await store.update_request(r1, admitted) == admitted
    assert await store.get_request(r1.id) == admitted
    with pytest.raises(VersionMismatch):
        await store.update_request(r1, transition(r1, RequestState.SUPERSEDED, now=NOW))
    waiting = await store.list_requests(Q, states=[RequestState.ACCEPTED])
    assert [r.id for r in waiting] == [r2.id]
    stale = await store.list_unfinished_requests(NOW + timedelta(seconds=1))
    assert {r.id for r in stale} == {r1.id, r2.id}
    assert await store.get_request("request/mono/main/999") is None


async def test_builds_are_create_only_and_cas_updated(store: Store) -> None:
    build = Build(
        queue=Q,
        build_id="b-1",
        request_id="request/mono/main/1",
        project="",
        status=BuildStatus.PENDING,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )
    await store.create_build(build)
    with pytest.raises(AlreadyExists) as exc:
        await store.create_build(dataclasses.replace(build, status=BuildStatus.RUNNING))
    assert exc.value.existing == build
    done = dataclasses.replace(
        build,
        status=BuildStatus.FAILED,
        version=2,
        targets=(
            TargetOutcome(
                name="unit", state="failed", exit_code=1, duration_seconds=0.5, paths=("src/**",)
            ),
        ),
        message="unit failed",
    )
    await store.update_build(build, done)
    assert await store.get_build(Q, "b-1") == done
    with pytest.raises(VersionMismatch):
        await store.update_build(build, done)


async def test_facts_are_never_overwritten(store: Store) -> None:
    green = _fact("u1", 0.0)
    await store.create_fact(green)
    with pytest.raises(AlreadyExists) as exc:
        await store.create_fact(
            dataclasses.replace(green, degree=1.0, request_id="request/mono/main/2")
        )
    assert exc.value.existing == green
    assert await store.get_fact(Q, "u1", "") == green
    assert await store.get_fact(Q, "u1", "web") is None


async def test_facts_page_newest_first(store: Store) -> None:
    for i in range(5):
        await store.create_fact(_fact(f"u{i}", at=NOW + timedelta(minutes=i)))
    page1, token = await store.list_facts(Q, "", page_size=2)
    page2, token2 = await store.list_facts(Q, "", page_size=2, page_token=token)
    page3, token3 = await store.list_facts(Q, "", page_size=2, page_token=token2)
    assert [f.uri for f in page1 + page2 + page3] == ["u4", "u3", "u2", "u1", "u0"]
    assert token and token2 and token3 == ""
