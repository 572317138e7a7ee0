"""The storage contract. Every test runs on both backends: ``[sqlite]`` and ``[postgres]``."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stovepipe.domain import (
    Build,
    BuildStatus,
    BuildStrategy,
    FactOrigin,
    InvalidInput,
    InvalidQueueName,
    RequestId,
    RequestState,
    TargetOutcome,
    ValidationFact,
    authoritative,
    start_new_attempt,
    transition,
    with_build,
)
from stovepipe.storage import (
    AlreadyExists,
    HookDelivery,
    HookDeliveryStatus,
    StorageError,
    Store,
    VersionMismatch,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"
OTHER = "mono/release"


def fact(
    uri: str,
    *,
    degree: float = 0.0,
    project: str = "",
    request_id: str = "request/mono/main/1",
    at: datetime = NOW,
) -> ValidationFact:
    return ValidationFact(
        queue=Q,
        uri=uri,
        project=project,
        degree=degree,
        request_id=request_id,
        origin=FactOrigin.BUILD,
        created_at=at,
    )


def build(build_id: str = "b-1") -> Build:
    return Build(
        queue=Q,
        build_id=build_id,
        request_id="request/mono/main/1",
        project="",
        status=BuildStatus.PENDING,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def delivery(hook: str = "webhook") -> HookDelivery:
    return HookDelivery(
        queue=Q,
        event_id="evt-1",
        hook=hook,
        status=HookDeliveryStatus.PENDING,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


# Queues


async def test_ensure_queue_creates_once_and_returns_the_stored_row(store: Store) -> None:
    assert await store.get_queue(Q) is None
    first = await store.ensure_queue(Q, now=NOW)
    again = await store.ensure_queue(Q, now=NOW + timedelta(hours=1))
    assert first == again
    assert (first.version, first.in_flight_count, first.updated_at) == (1, 0, NOW)
    assert first.last_green_uri is None and first.latest_request_id is None
    await store.ensure_queue(OTHER)
    assert [q.name for q in await store.list_queues()] == [Q, OTHER]


async def test_concurrent_ensure_queue_makes_one_row(store: Store) -> None:
    made = await asyncio.gather(*(store.ensure_queue(Q, now=NOW) for _ in range(20)))
    assert {q.version for q in made} == {1}
    assert len(await store.list_queues()) == 1


async def test_ensure_queue_refuses_a_malformed_name(store: Store) -> None:
    with pytest.raises(InvalidQueueName):
        await store.ensure_queue("Mono//Main")
    assert await store.list_queues() == []


async def test_queue_cas_succeeds_from_the_current_version_only(store: Store) -> None:
    base = await store.ensure_queue(Q, now=NOW)
    taken = base.with_slot_taken("request/mono/main/1", now=NOW + timedelta(seconds=1))
    assert await store.update_queue(base, taken) == taken
    assert await store.get_queue(Q) == taken
    assert taken.in_flight_count == 1
    stale = base.evolve(now=NOW, latest_request_id="request/mono/main/9")
    with pytest.raises(VersionMismatch):
        await store.update_queue(base, stale)
    assert await store.get_queue(Q) == taken
    bookmarked = taken.evolve(
        now=NOW + timedelta(seconds=2),
        last_green_uri="git:abc",
        last_green_request_id="request/mono/main/1",
        latest_request_id="request/mono/main/1",
    )
    await store.update_queue(taken, bookmarked)
    assert await store.get_queue(Q) == bookmarked
    promoted = bookmarked.evolve(
        now=NOW + timedelta(seconds=3), promoted_ref="verified-main", promoted_uri="git:abc"
    )
    await store.update_queue(bookmarked, promoted)
    assert await store.get_queue(Q) == promoted


async def test_two_writers_on_one_queue_version_exactly_one_wins(store: Store) -> None:
    base = await store.ensure_queue(Q, now=NOW)
    candidates = [base.evolve(now=NOW, latest_request_id=f"request/mono/main/{i}") for i in (1, 2)]
    results = await asyncio.gather(
        *(store.update_queue(base, c) for c in candidates), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 1 and isinstance(losers[0], VersionMismatch)
    assert await store.get_queue(Q) == winners[0]


async def test_a_cas_must_advance_the_version_by_one_and_keep_the_key(store: Store) -> None:
    base = await store.ensure_queue(Q, now=NOW)
    with pytest.raises(StorageError, match="must write version 2"):
        await store.update_queue(base, dataclasses.replace(base, version=5))
    with pytest.raises(StorageError, match="cannot change the key"):
        await store.update_queue(base, dataclasses.replace(base, name=OTHER, version=2))
    assert await store.get_queue(Q) == base


# Counters


async def test_fifty_concurrent_counter_increments_are_all_unique(store: Store) -> None:
    values = await asyncio.gather(*(store.next_request_number(Q) for _ in range(50)))
    assert sorted(values) == list(range(1, 51))
    assert await store.next_request_number(OTHER) == 1
    assert await store.next_request_number(Q) == 51


# Requests


async def test_create_request_numbers_requests_and_deduplicates_heads(store: Store) -> None:
    r1, created1 = await store.create_request(Q, "git:a", trigger="poller", now=NOW)
    r2, created2 = await store.create_request(Q, "git:b", trigger="poller", now=NOW)
    again, created3 = await store.create_request(Q, "git:a", trigger="webhook", now=NOW)
    assert (created1, created2, created3) == (True, True, False)
    assert again == r1 and again.trigger == "poller"
    assert (r1.id, r2.id) == ("request/mono/main/1", "request/mono/main/2")
    assert r1.state is RequestState.ACCEPTED and r1.version == 1 and r1.created_at == NOW
    assert await store.find_request(Q, "git:b") == r2
    assert await store.find_request(Q, "git:zzz") is None
    assert await store.find_request(OTHER, "git:a") is None
    assert await store.get_request(r1.id) == r1
    assert await store.get_request("request/mono/main/999") is None
    elsewhere, created = await store.create_request(OTHER, "git:a", trigger="poller", now=NOW)
    assert created and elsewhere.id == "request/mono/release/1"


async def test_fifty_concurrent_ingests_of_one_head_make_one_request(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_request(Q, "git:head", trigger="poller", now=NOW) for _ in range(50))
    )
    assert sum(created for _, created in results) == 1
    assert len({request.id for request, _ in results}) == 1
    assert sum(not created for _, created in results) == 49
    stored = await store.list_requests(Q)
    assert [r.id for r in stored] == [results[0][0].id]


async def test_concurrent_ingests_of_different_heads_get_distinct_numbers(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_request(Q, f"git:{i}", trigger="poller", now=NOW) for i in range(30))
    )
    assert all(created for _, created in results)
    numbers = [request.request_id.n for request, _ in results]
    assert len(set(numbers)) == 30
    assert len(await store.list_requests(Q, limit=100)) == 30


async def test_request_cas_round_trips_every_field(store: Store) -> None:
    r1, _ = await store.create_request(Q, "git:a", trigger="cli", now=NOW)
    later = NOW + timedelta(minutes=1)
    admitted = transition(
        r1,
        RequestState.PROCESSING,
        now=later,
        build_strategy=BuildStrategy.INCREMENTAL,
        base_uri="git:base",
        reason="admitted",
    )
    assert await store.update_request(r1, admitted) == admitted
    with_runner_build = with_build(admitted, "b-7", now=later)
    await store.update_request(admitted, with_runner_build)
    assert await store.get_request(r1.id) == with_runner_build
    with pytest.raises(VersionMismatch):
        await store.update_request(r1, transition(r1, RequestState.SUPERSEDED, now=later))
    assert await store.get_request(r1.id) == with_runner_build


async def test_two_writers_on_one_request_version_exactly_one_wins(store: Store) -> None:
    request, _ = await store.create_request(Q, "git:a", trigger="cli", now=NOW)
    superseded = transition(request, RequestState.SUPERSEDED, now=NOW, reason="newer head")
    admitted = transition(
        request, RequestState.PROCESSING, now=NOW, build_strategy=BuildStrategy.FULL
    )
    results = await asyncio.gather(
        store.update_request(request, superseded),
        store.update_request(request, admitted),
        return_exceptions=True,
    )
    assert sum(isinstance(r, VersionMismatch) for r in results) == 1
    [winner] = [r for r in results if not isinstance(r, BaseException)]
    assert await store.get_request(request.id) == winner


async def test_a_request_cas_keeps_created_at_and_identity(store: Store) -> None:
    request, _ = await store.create_request(Q, "git:a", trigger="cli", now=NOW)
    moved = transition(request, RequestState.CANCELLED, now=NOW + timedelta(seconds=5))
    with pytest.raises(StorageError, match="cannot change the key"):
        await store.update_request(request, dataclasses.replace(moved, id="request/mono/main/2"))
    rewritten = dataclasses.replace(moved, created_at=NOW + timedelta(days=1))
    await store.update_request(request, rewritten)
    stored = await store.get_request(request.id)
    assert stored is not None and stored.created_at == NOW
    assert stored.state is RequestState.CANCELLED


async def test_list_requests_filters_orders_and_limits(store: Store) -> None:
    made = [
        (await store.create_request(Q, f"git:{i}", trigger="poller", now=NOW))[0] for i in range(5)
    ]
    await store.create_request(OTHER, "git:x", trigger="poller", now=NOW)
    failed = transition(made[1], RequestState.FAILED, now=NOW, reason="broken")
    await store.update_request(made[1], failed)
    newest = await store.list_requests(Q)
    assert [r.id for r in newest] == [r.id for r in reversed(made)]
    oldest_two = await store.list_requests(Q, limit=2, newest_first=False)
    assert [r.id for r in oldest_two] == [made[0].id, made[1].id]
    accepted = await store.list_requests(Q, states=[RequestState.ACCEPTED], newest_first=False)
    assert [r.id for r in accepted] == [made[0].id, made[2].id, made[3].id, made[4].id]
    assert await store.list_requests(Q, states=[RequestState.FAILED]) == [failed]
    assert await store.list_requests(Q, states=[]) == []
    with pytest.raises(InvalidInput):
        await store.list_requests(Q, limit=0)


async def test_list_unfinished_requests_finds_stale_non_terminal_ones(store: Store) -> None:
    times = [NOW + timedelta(minutes=m) for m in range(4)]
    stale_accepted, _ = await store.create_request(Q, "git:0", trigger="t", now=times[0])
    processing, _ = await store.create_request(OTHER, "git:1", trigger="t", now=times[0])
    await store.update_request(
        processing,
        transition(
            processing, RequestState.PROCESSING, now=times[1], build_strategy=BuildStrategy.FULL
        ),
    )
    done, _ = await store.create_request(Q, "git:2", trigger="t", now=times[0])
    await store.update_request(done, transition(done, RequestState.CANCELLED, now=times[0]))
    await store.create_request(Q, "git:3", trigger="t", now=times[3])
    found = await store.list_unfinished_requests(times[2])
    assert [r.id for r in found] == [stale_accepted.id, processing.id]
    assert [r.id for r in await store.list_unfinished_requests(times[2], 1)] == [stale_accepted.id]
    assert await store.list_unfinished_requests(times[0]) == []


async def test_requests_refuse_input_that_cannot_be_stored(store: Store) -> None:
    with pytest.raises(InvalidInput, match="URI"):
        await store.create_request(Q, "", trigger="t", now=NOW)
    with pytest.raises(InvalidInput, match="limit is 1024"):
        await store.create_request(Q, "git:" + "x" * 2000, trigger="t", now=NOW)
    with pytest.raises(InvalidInput):
        await store.get_request("requests/mono/main/one")
    with pytest.raises(InvalidInput, match="time zone"):
        await store.create_request(Q, "git:naive", trigger="t", now=datetime(2026, 5, 1, 12))
    assert await store.list_requests(Q) == []


async def test_instants_come_back_in_utc_whatever_offset_they_were_written_with(
    store: Store,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=plus_two)
    request, _ = await store.create_request(Q, "git:a", trigger="t", now=local)
    stored = await store.get_request(request.id)
    assert stored is not None
    assert stored.created_at == datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert await store.list_unfinished_requests(NOW + timedelta(microseconds=123457)) == [stored]
    assert await store.list_unfinished_requests(NOW + timedelta(microseconds=123456)) == []


# Builds


async def test_builds_are_create_only_and_cas_updated(store: Store) -> None:
    pending = build()
    assert await store.create_build(pending) == pending
    with pytest.raises(AlreadyExists) as exists:
        await store.create_build(dataclasses.replace(pending, status=BuildStatus.RUNNING))
    assert exists.value.existing == pending
    finished = dataclasses.replace(
        pending,
        status=BuildStatus.FAILED,
        version=2,
        updated_at=NOW + timedelta(minutes=3),
        targets=(
            TargetOutcome(name="lint", state="succeeded", duration_seconds=1.25),
            TargetOutcome(
                name="unit", state="failed", exit_code=1, duration_seconds=0.5, paths=("src/**",)
            ),
        ),
        message="unit failed",
    )
    assert await store.update_build(pending, finished) == finished
    assert await store.get_build(Q, "b-1") == finished
    with pytest.raises(VersionMismatch):
        await store.update_build(pending, finished)
    assert await store.get_build(Q, "b-2") is None
    assert await store.get_build(OTHER, "b-1") is None


# Validation facts


async def test_a_fact_is_never_overwritten(store: Store) -> None:
    green = fact("git:a", degree=0.0)
    assert await store.create_fact(green) == green
    broken = dataclasses.replace(green, degree=1.0, request_id="request/mono/main/2")
    with pytest.raises(AlreadyExists) as exists:
        await store.create_fact(broken)
    assert exists.value.existing == green
    assert await store.get_fact(Q, "git:a", "") == green
    web = fact("git:a", project="web", degree=0.25, at=NOW + timedelta(seconds=1))
    await store.create_fact(web)
    assert await store.get_fact(Q, "git:a", "web") == web
    assert await store.get_fact(Q, "git:a", "api") is None
    assert await store.get_fact(Q, "git:b", "") is None


async def test_racing_fact_writers_agree_on_the_first_one(store: Store) -> None:
    candidates = [
        fact("git:a", degree=i / 20, request_id=f"request/mono/main/{i + 1}") for i in range(20)
    ]
    results = await asyncio.gather(
        *(store.create_fact(c) for c in candidates), return_exceptions=True
    )
    [winner] = [r for r in results if isinstance(r, ValidationFact)]
    conflicts = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(conflicts) == 19
    assert all(c.existing == winner for c in conflicts)
    assert await store.get_fact(Q, "git:a", "") == winner


async def test_facts_are_listed_newest_first_in_pages(store: Store) -> None:
    for i in range(5):
        await store.create_fact(fact(f"git:{i}", at=NOW + timedelta(minutes=i)))
    await store.create_fact(fact("git:tie", at=NOW + timedelta(minutes=2)))
    await store.create_fact(fact("git:other-project", project="web"))
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page, token = await store.list_facts(Q, "", page_size=2, page_token=token)
        assert len(page) <= 2
        seen += [f.uri for f in page]
        if not token:
            break
    assert seen == ["git:4", "git:3", "git:2", "git:tie", "git:1", "git:0"]
    assert [f.uri for f in (await store.list_facts(Q, "web", page_size=10))[0]] == [
        "git:other-project"
    ]
    assert await store.list_facts(OTHER, "", page_size=10) == ([], "")


async def test_fact_pages_stay_consistent_while_facts_arrive(store: Store) -> None:
    for i in range(4):
        await store.create_fact(fact(f"git:{i}", at=NOW + timedelta(minutes=i)))
    first, token = await store.list_facts(Q, "", page_size=2)
    await store.create_fact(fact("git:new", at=NOW + timedelta(hours=1)))
    second, last_token = await store.list_facts(Q, "", page_size=2, page_token=token)
    assert [f.uri for f in first + second] == ["git:3", "git:2", "git:1", "git:0"]
    assert last_token == ""


async def test_list_facts_refuses_bad_pages(store: Store) -> None:
    with pytest.raises(InvalidInput, match="page_token"):
        await store.list_facts(Q, "", page_size=2, page_token="garbage")
    with pytest.raises(InvalidInput):
        await store.list_facts(Q, "", page_size=0)


async def test_every_attempt_keeps_its_fact_and_reads_answer_with_the_authoritative_one(
    store: Store,
) -> None:
    """Storage's SQL rule agrees with ``domain.fact.outranks`` on every short history."""
    kinds = {
        "green": (0.0, FactOrigin.BUILD),
        "broken": (1.0, FactOrigin.BUILD),
        "closed": (1.0, FactOrigin.FAIL_CLOSED),
    }
    histories = [h for n in (1, 2, 3) for h in itertools.product(sorted(kinds), repeat=n)]
    expected: dict[str, ValidationFact] = {}
    for i, history in enumerate(histories):
        uri = f"git:{i}-{'-'.join(history)}"
        written = []
        for attempt, kind in enumerate(history, start=1):
            degree, origin = kinds[kind]
            written.append(
                await store.create_fact(
                    dataclasses.replace(
                        fact(uri, degree=degree, at=NOW + timedelta(seconds=i)),
                        origin=origin,
                        attempt=attempt,
                    )
                )
            )
        assert await store.list_fact_attempts(Q, uri, "") == written
        best = authoritative(written)
        assert best is not None
        assert await store.get_fact(Q, uri, "") == best, history
        expected[uri] = best
    listed: list[ValidationFact] = []
    token = ""
    while True:
        page, token = await store.list_facts(Q, "", page_size=7, page_token=token)
        listed += page
        if not token:
            break
    assert {f.uri: f for f in listed} == expected
    assert len(listed) == len(histories)  # one answer per commit, not one per attempt
    # the batched read of a history page agrees, and leaves out commits without a fact
    asked = [*expected, "git:never-recorded"]
    assert await store.get_facts(Q, asked, "") == expected
    assert await store.get_facts(Q, asked, "some-project") == {}
    assert await store.get_facts(Q, [], "") == {}


async def test_an_attempt_s_fact_is_create_only(store: Store) -> None:
    first = fact("git:a", degree=1.0)
    second = dataclasses.replace(first, degree=0.0, attempt=2)
    await store.create_fact(first)
    await store.create_fact(second)
    with pytest.raises(AlreadyExists) as exists:
        await store.create_fact(dataclasses.replace(second, degree=1.0))
    assert exists.value.existing == second
    assert await store.get_fact_of_attempt(Q, "git:a", "", 1) == first
    assert await store.get_fact_of_attempt(Q, "git:a", "", 3) is None


async def test_unrecorded_requests_are_judged_by_their_current_attempt(store: Store) -> None:
    request, _ = await store.create_request(Q, "git:a", trigger="t", now=NOW)
    failed = await store.update_request(
        request, transition(request, RequestState.FAILED, now=NOW, reason="x")
    )
    await store.create_fact(
        dataclasses.replace(fact("git:a", degree=1.0, request_id=request.id), attempt=1)
    )
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert await store.list_unrecorded_requests(*window) == []
    again = await store.update_request(
        failed, start_new_attempt(failed, now=NOW, reason="re-validation")
    )
    failed_again = await store.update_request(
        again, transition(again, RequestState.FAILED, now=NOW, reason="y")
    )
    assert [r.id for r in await store.list_unrecorded_requests(*window)] == [failed_again.id]


# Hook deliveries


async def test_hook_deliveries_are_create_only_and_cas_updated(store: Store) -> None:
    pending = delivery()
    assert await store.create_hook_delivery(pending) == pending
    with pytest.raises(AlreadyExists) as exists:
        await store.create_hook_delivery(pending)
    assert exists.value.existing == pending
    failed_once = pending.with_attempt(
        HookDeliveryStatus.PENDING, now=NOW + timedelta(seconds=1), error="HTTP 503"
    )
    await store.update_hook_delivery(pending, failed_once)
    delivered = failed_once.with_attempt(
        HookDeliveryStatus.DELIVERED, now=NOW + timedelta(seconds=5)
    )
    await store.update_hook_delivery(failed_once, delivered)
    stored = await store.get_hook_delivery(Q, "evt-1", "webhook")
    assert stored == delivered
    assert (stored.attempts, stored.version, stored.status.terminal) == (2, 3, True)
    with pytest.raises(VersionMismatch):
        await store.update_hook_delivery(failed_once, delivered)
    assert await store.get_hook_delivery(Q, "evt-1", "kafka") is None


async def test_the_gate_read_joins_the_bookmark_to_its_authoritative_fact(store: Store) -> None:
    assert await store.get_last_green(Q) is None
    base = await store.ensure_queue(Q, now=NOW)
    assert await store.get_last_green(Q) == (base, None)
    green = await store.create_fact(fact("git:a", degree=0.0))
    await store.create_fact(dataclasses.replace(fact("git:a", degree=1.0), attempt=2))
    await store.create_fact(fact("git:b", degree=0.0))  # another commit: not joined
    bookmarked = base.evolve(
        now=NOW, last_green_uri="git:a", last_green_request_id="request/mono/main/1"
    )
    await store.update_queue(base, bookmarked)
    # the earliest green attempt outranks the later broken one, as get_fact says
    assert await store.get_fact(Q, "git:a", "") == green
    assert await store.get_last_green(Q) == (bookmarked, green)


async def test_the_previous_fact_is_the_queues_previous_verdict_in_ingest_order(
    store: Store,
) -> None:
    """Recorded out of order (3 before 2), each verdict's "previous" is still the one of the
    Request ingested just before it that has a verdict: what transitions are made from."""
    requests = [
        (await store.create_request(Q, f"git:{i}", trigger="t", now=NOW))[0] for i in range(4)
    ]
    n = [RequestId.parse(r.id).n for r in requests]
    assert await store.previous_fact(Q, "", n[0]) is None
    await store.create_fact(fact("git:0", degree=0.0, request_id=requests[0].id))
    await store.create_fact(fact("git:2", degree=1.0, request_id=requests[2].id))
    previous = await store.previous_fact(Q, "", n[2])
    assert previous is not None and previous.uri == "git:0"  # 1 has no verdict yet
    await store.create_fact(fact("git:1", degree=1.0, request_id=requests[1].id))
    assert (await store.previous_fact(Q, "", n[2])).uri == "git:1"  # type: ignore[union-attr]
    assert (await store.previous_fact(Q, "", n[3])).uri == "git:2"  # type: ignore[union-attr]
    assert await store.previous_fact(Q, "web", n[3]) is None  # another scope has none


async def test_hook_deliveries_are_listed_newest_first_and_filtered(store: Store) -> None:
    for i, status in enumerate(
        [HookDeliveryStatus.DELIVERED, HookDeliveryStatus.FAILED, HookDeliveryStatus.PENDING]
    ):
        row = dataclasses.replace(delivery(f"h{i}"), status=status, position=i)
        await store.create_hook_delivery(row)
    page, token = await store.list_hook_deliveries(page_size=2)
    assert len(page) == 2 and token
    rest, last = await store.list_hook_deliveries(page_size=2, page_token=token)
    assert len(rest) == 1 and last == ""
    failed, _ = await store.list_hook_deliveries(status=HookDeliveryStatus.FAILED, page_size=10)
    assert [d.hook for d in failed] == ["h1"]
    assert (await store.next_hook_delivery(Q, "h2")).hook == "h2"  # type: ignore[union-attr]
    assert await store.next_hook_delivery(Q, "h1") is None  # failed is not pending
    assert await store.pending_hook_subscriptions() == [(Q, "h2")]
    await store.disable_hook_subscription(Q, "h2", "HTTP 410 Gone", NOW)
    await store.disable_hook_subscription(Q, "h2", "again", NOW)  # the first reason stays
    assert await store.hook_subscription_disabled(Q, "h2") == "HTTP 410 Gone"
    await store.enable_hook_subscription(Q, "h2")
    assert await store.hook_subscription_disabled(Q, "h2") is None
    with pytest.raises(InvalidInput):
        await store.list_hook_deliveries(page_size=2, page_token="x")
