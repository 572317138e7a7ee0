"""Graceful shutdown: SIGTERM drains in-flight work; a restart neither loses nor repeats.

Everything runs on the real broker. Four layers are covered:

* the ``Bus`` (what SIGTERM ends up calling): a handler that is running when
  the stop begins completes and is committed, and a consumer that takes over
  the group applies every record the stop left uncommitted and none it
  committed (records of other keys that finished beyond the committed frontier
  come again: at least once); a handler that outlives the
  grace period is cancelled, stays uncommitted and is applied once after the
  restart;
* real ``stovepipe worker`` processes (the fault stack: PostgreSQL, extensions
  behind chaos proxies, every worker): SIGTERM while a handler is inside an
  extension call exits 0 within the grace period plus a margin, whether the
  call finishes in time (its effect happens once) or not (it is redone after
  the restart, and the head still gets its true verdict);
* the delay forwarder, stopped while it holds a message that is not yet due:
  the next forwarder delivers it once, and not early;
* ``stovepipe up``, whose supervisor must wait for that drain before it kills.

Side effects are counted outside the code under test (a list the handler
appends to, the chaos proxy's call counts, the hook events on the broker), and
"nothing will come back" is read from the consumer group's committed offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from harness.chaos_proxy import Fault
from harness.fault_checks import commit_of, settle, watching
from harness.fault_stack import FaultStack, fault_stack
from harness.postgres import PostgresCluster
from stovepipe.config import config_from_mapping
from stovepipe.delays import DEFAULT_TIERS_S, HEADER_NOT_BEFORE, HEADER_TARGET, DelayForwarder
from stovepipe.delays.tiers import tier_topic
from stovepipe.hooks.events import VERDICT_RECORDED
from stovepipe.messaging import Bus, Delivery, KafkaSettings, ensure_topics
from stovepipe.runtime.embedded import STOP_MARGIN_S, supervisor_stop_timeout
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.broker

PROCESS = "stovepipe.process"
HOOK = "stovepipe.hook"
DEADLINE_S = 30.0


# The Bus


def _message(n: int, queue: str = "q") -> topics_pb2.ProcessMessage:
    return topics_pb2.ProcessMessage(request_id=f"request/{queue}/{n}", queue=queue)


async def _committed(settings: KafkaSettings, topic: str, group: str) -> dict[int, int | None]:
    """The group's committed offset per partition, read by a consumer that never joins it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group(group),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        physical = settings.topic(topic)
        return {
            p: await consumer.committed(TopicPartition(physical, p))
            for p in range(settings.partitions)
        }
    finally:
        await consumer.stop()


async def _ends(settings: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic(topic), p) for p in range(settings.partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def _fully_committed(settings: KafkaSettings, group: str) -> bool:
    """Every record of the topic is committed in ``group``: nothing can come back."""
    ends = await _ends(settings, PROCESS)
    committed = await _committed(settings, PROCESS, group)
    return all((committed[p] or 0) == end for p, end in ends.items())


async def test_stop_lets_a_running_handler_finish_commits_it_and_a_restart_applies_each_record_once(
    kafka_settings: KafkaSettings,
) -> None:
    settings = replace(kafka_settings, graceful_timeout_s=10.0)
    await ensure_topics(settings, [PROCESS])
    applied: list[str] = []  # the side effect: one entry per completed handler
    started, finish = asyncio.Event(), asyncio.Event()
    first_id = _message(1).request_id

    async def apply(payload: topics_pb2.ProcessMessage, _delivery: Delivery) -> None:
        if payload.request_id == first_id and not finish.is_set():
            started.set()
            await finish.wait()  # mid-way when the stop begins
        applied.append(payload.request_id)

    first = Bus(settings)
    first.consumer.subscribe(PROCESS, apply, group="drain")
    await first.start()
    held = await first.publish(PROCESS, _message(1))
    assert held.partition is not None and held.offset is not None
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    # records of its key queued behind it, and records of other keys (on both
    # partitions), which run meanwhile
    behind = [_message(n) for n in range(2, 5)]
    others = [_message(n, f"q{n}") for n in range(5, 11)]
    where: dict[str, tuple[int, int]] = {}  # request id -> (partition, offset)
    for message in behind + others:
        sent = await first.publish(PROCESS, message)
        assert sent.partition is not None and sent.offset is not None
        where[message.request_id] = (sent.partition, sent.offset)
    landed = {partition for partition, _ in where.values()}
    assert landed == set(range(settings.partitions))
    later = behind + others

    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.5)
    assert not stopping.done(), "the stop must wait for the running handler"
    finish.set()
    await asyncio.wait_for(stopping, settings.stop_timeout_s + 1)

    # the running handler completed and was committed; nothing of its key that
    # waited behind it was started once the stop began, so the commit stops there
    assert first_id in applied
    assert not {m.request_id for m in behind} & set(applied)
    committed = await _committed(settings, PROCESS, "drain")
    assert committed[held.partition] == held.offset + 1

    second = Bus(settings)
    second.consumer.subscribe(PROCESS, apply, group="drain")
    async with second:
        await until(
            lambda: _fully_committed(settings, "drain"),
            what="the restart catching up",
            timeout_s=DEADLINE_S,
        )
    counts = Counter(applied)
    assert set(counts) == {first_id, *(m.request_id for m in later)}  # none lost
    # Nothing the stop committed is applied again. A record of another key that
    # completed beyond its partition's committed frontier (it ran beside the held
    # record while that record's key-mates waited, and the stop left those unstarted)
    # is delivered again after the restart: at least once, as the handlers expect.
    twice = [name for name, n in counts.items() if n != 1]
    assert all(n <= 2 for n in counts.values()), counts
    beyond = [
        name
        for name in twice
        if name != first_id and where[name][1] >= (committed[where[name][0]] or 0)
    ]
    assert twice == beyond, (twice, where, committed)


async def test_a_handler_outliving_the_grace_period_is_cancelled_uncommitted_and_redelivered(
    kafka_settings: KafkaSettings,
) -> None:
    settings = replace(kafka_settings, graceful_timeout_s=1.0)
    await ensure_topics(settings, [PROCESS])
    applied: list[str] = []
    cancelled: list[int] = []
    started = asyncio.Event()
    first_id = _message(1).request_id

    async def apply(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
        if payload.request_id == first_id and not cancelled:
            started.set()
            try:
                await asyncio.Event().wait()  # far longer than the grace period
            except asyncio.CancelledError:
                cancelled.append(delivery.offset)
                raise
        applied.append(payload.request_id)

    first = Bus(settings)
    first.consumer.subscribe(PROCESS, apply, group="overrun")
    await first.start()
    held = await first.publish(PROCESS, _message(1))
    assert held.partition is not None
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    behind = await first.publish(PROCESS, _message(2))
    assert behind.partition == held.partition

    loop = asyncio.get_running_loop()
    began = loop.time()
    await first.stop()
    took = loop.time() - began
    assert settings.graceful_timeout_s <= took <= settings.stop_timeout_s + 1.0
    assert cancelled == [held.offset]
    assert applied == []
    assert (await _committed(settings, PROCESS, "overrun"))[held.partition] is None

    second = Bus(settings)
    second.consumer.subscribe(PROCESS, apply, group="overrun")
    async with second:
        await until(
            lambda: _fully_committed(settings, "overrun"),
            what="the redelivery",
            timeout_s=DEADLINE_S,
        )
    assert applied == [first_id, _message(2).request_id]  # in order, once each


# Worker processes

# The extension call each stage's handler is caught inside.
HELD = {"build": ("runner", "Trigger"), "record": ("git", "Promote")}

MARGIN_S = KafkaSettings.close_timeout_s + STOP_MARGIN_S
"""What a worker may take beyond its drain to leave its groups and close (Python exit
included): what the supervisor of ``stovepipe up`` allows it before SIGKILL."""
OVERRUN_GRACE_S = 2.0
"""The grace period of the stack whose held handler outlives it."""


@asynccontextmanager
async def _stack(
    root: Path, postgres: PostgresCluster, template: str, *, graceful_s: float, rounds: int
) -> AsyncIterator[FaultStack]:
    kafka = {"graceful_timeout_seconds": graceful_s}
    # the sweeper is not under test here: a re-drive of a held head would make the
    # number of times its handler ran ambiguous
    async with fault_stack(
        root, postgres, kafka=kafka, rounds=rounds, template=template, sweeper_stale_after_s=60.0
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def draining_stack(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: PostgresCluster, fault_template: str
) -> AsyncIterator[FaultStack]:
    """Workers that drain for up to 30 s: long enough for any handler the tests release."""
    root = tmp_path_factory.mktemp("draining")
    async with _stack(
        root, fault_postgres, fault_template, graceful_s=30.0, rounds=len(HELD)
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def overrun_stack(
    tmp_path_factory: pytest.TempPathFactory, fault_postgres: PostgresCluster, fault_template: str
) -> AsyncIterator[FaultStack]:
    """Workers that drain for 2 s only, so a held handler outlives the grace period."""
    root = tmp_path_factory.mktemp("overrun")
    async with _stack(
        root, fault_postgres, fault_template, graceful_s=OVERRUN_GRACE_S, rounds=1
    ) as stack:
        yield stack


@pytest.fixture
async def draining(draining_stack: FaultStack) -> FaultStack:
    # work ingested before every group has formed would be re-driven as stale: reset
    # waits until every worker is ready
    await draining_stack.reset()
    return draining_stack


@pytest.fixture
async def overrun(overrun_stack: FaultStack) -> FaultStack:
    await overrun_stack.reset()
    return overrun_stack


async def _times_applied(stack: FaultStack, stage: str, head: str) -> int:
    """How often the stage's handler ran to its end for ``head``, from outside evidence.

    build: the runner's Trigger calls (the sweeper never triggers). record: the
    ``verdict.recorded`` events published for the head, one per completed run (the
    transition event that may accompany it is not a second run; Promote is also
    re-asserted by the sweeper, so its calls prove nothing).
    """
    if stage == "build":
        return stack.runner_proxy.calls["Trigger"]
    events = [topics_pb2.HookEvent.FromString(r.value or b"") for r in await stack.records(HOOK)]
    return sum(1 for e in events if e.data.request_id == head and e.type == VERDICT_RECORDED)


async def _held_record(stack: FaultStack, stage: str, head: str) -> tuple[int, int, int]:
    """(partition, offset) of the head's first record on the stage topic, and how many it has."""
    mine = [
        r for r in await stack.records(f"stovepipe.{stage}") if head.encode() in (r.value or b"")
    ]
    assert mine, f"no {stage} record for {head}"
    return mine[0].partition, mine[0].offset, len(mine)


@pytest.mark.parametrize("stage", sorted(HELD))
async def test_sigterm_mid_handler_finishes_commits_and_exits_zero(
    draining: FaultStack, stage: str
) -> None:
    stack = draining
    assert stack.store is not None
    proxy_name, method = HELD[stage]
    proxy = stack.git_proxy if proxy_name == "git" else stack.runner_proxy
    queue = stack.queue_names[0]
    name = f"worker-{stage}"
    async with watching(stack) as watch:
        # the sweeper re-asserts earlier tests' promotions: hold this Queue's calls only
        proxy.set_fault(method, Fault.HOLD, only=str(stack.repos[queue].origin))
        head = await stack.push_and_ingest(queue, green=True)

        async def inside() -> bool:
            return proxy.held(method) > 0

        await stack.wait_until(inside, 60, f"{name} inside {method}")
        terminating = asyncio.create_task(stack.terminate(name, restart=False))
        await asyncio.sleep(1.0)
        assert not terminating.done()  # it waits for the handler instead of dying
        assert not await stack.is_ready(name)  # and its health says so while it drains
        proxy.clear(method)
        released = time.monotonic()
        assert await terminating == 0, stack.log_tail(name)
        assert time.monotonic() - released < MARGIN_S
        # the drained handler's offset was committed before the worker left, so
        # the next owner of the partition starts after it
        partition, offset, _ = await _held_record(stack, stage, head)
        assert (await stack.committed(f"stovepipe.{stage}", stage))[partition] > offset

        await stack.bring_up(name)
        await stack.until_ready([name])
        await settle(stack, watch, [head])
        topic = f"stovepipe.{stage}"

        async def caught_up() -> bool:
            return await stack.consumed(topic, stage)

        await stack.wait_until(caught_up, 60, f"{name} caught up")
        # ... and it did not run it again: once per record of the head (the sweeper may
        # legitimately have sent a second one, which is then applied once too)
        _, _, records = await _held_record(stack, stage, head)
        assert await _times_applied(stack, stage, head) == (1 if stage == "build" else records)
        request = await stack.store.get_request(head)
        assert request is not None and request.state.value == "succeeded"
        fact = await stack.store.get_fact(queue, request.uri, "")
        assert fact is not None and fact.green
        assert stack.repos[queue].truth[commit_of(request.uri)] is True


async def test_sigterm_with_a_handler_outliving_the_grace_period_exits_zero_and_loses_nothing(
    overrun: FaultStack,
) -> None:
    graceful_s = OVERRUN_GRACE_S
    stack = overrun
    assert stack.store is not None
    proxy = stack.runner_proxy
    queue = stack.queue_names[0]
    async with watching(stack) as watch:
        # held until after the worker is gone
        proxy.set_fault("Trigger", Fault.HOLD, only=str(stack.repos[queue].origin))
        head = await stack.push_and_ingest(queue, green=True)

        async def inside() -> bool:
            return proxy.held("Trigger") > 0

        await stack.wait_until(inside, 60, "worker-build inside Trigger")
        began = time.monotonic()
        code = await stack.terminate("worker-build", restart=False)
        took = time.monotonic() - began
        assert code == 0, stack.log_tail("worker-build")
        assert graceful_s <= took < graceful_s + MARGIN_S
        assert proxy.calls_in_flight("Trigger") == 0  # the call was abandoned
        # the cancelled handler's record was not committed: the next owner gets it
        partition, offset, _ = await _held_record(stack, "build", head)
        assert (await stack.committed("stovepipe.build", "build"))[partition] <= offset

        proxy.clear("Trigger")
        await stack.bring_up("worker-build")
        await settle(stack, watch, [head])
        assert proxy.calls["Trigger"] == 2  # the abandoned call, then the redelivery's
        request = await stack.store.get_request(head)
        assert request is not None and request.state.value == "succeeded"
        fact = await stack.store.get_fact(queue, request.uri, "")
        assert fact is not None and fact.green
        assert stack.repos[queue].truth[commit_of(request.uri)] is True


def test_stovepipe_up_waits_for_a_worker_drain_before_killing_it() -> None:
    """The supervisor of ``stovepipe up`` SIGKILLs a child that outlives its stop bound;
    the bound must cover the drain (grace period) and the close that follows it."""
    for graceful_s in (0.0, 30.0, 120.0):
        queue = {
            "name": "mono/main",
            "source": {"repository": "/srv/git/mono.git"},
            "build": {"targets": [{"name": "unit", "command": "make test"}]},
        }
        data = {"kafka": {"graceful_timeout_seconds": graceful_s}, "queues": [queue]}
        config = config_from_mapping(data, "stovepipe.yaml", env={})
        settings = KafkaSettings("127.0.0.1:9092", graceful_timeout_s=graceful_s)
        assert supervisor_stop_timeout(config) > settings.stop_timeout_s


# The delay forwarder


async def _records(settings: KafkaSettings, topic: str) -> list[tuple[int, int]]:
    """``(offset, timestamp_ms)`` of every record on ``topic`` so far, read without a group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[int, int]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            found += [(r.offset, r.timestamp) for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def test_a_stopped_delay_forwarder_loses_and_repeats_nothing(
    kafka_settings: KafkaSettings,
) -> None:
    settings = kafka_settings
    tiers = [settings.topic(tier_topic(t)) for t in DEFAULT_TIERS_S]
    tier = settings.topic(tier_topic(5.0))
    target, probes = settings.topic("stovepipe.record"), settings.topic("stovepipe.analyze")
    await ensure_topics(
        settings,
        [*(tier_topic(t) for t in DEFAULT_TIERS_S), "stovepipe.record", "stovepipe.analyze"],
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()

    async def delayed(to: str, due_ms: int) -> None:
        headers = [(HEADER_TARGET, to.encode()), (HEADER_NOT_BEFORE, str(due_ms).encode())]
        await producer.send_and_wait(tier, b"payload", partition=0, headers=headers)

    def forwarder() -> DelayForwarder:
        return DelayForwarder(settings, tiers, allowed_targets=frozenset({target, probes}))

    first = forwarder()
    running = asyncio.create_task(first.run())
    try:
        # a probe due at once: once it is forwarded, the forwarder has joined and consumes,
        # so a message due a few seconds later is sure to be held by it, not delivered
        await delayed(probes, int(time.time() * 1000))
        await until(lambda: first.forwarded == 1, what="the first forwarder consuming")
        due_ms = int((time.time() + 5.0) * 1000)
        await delayed(target, due_ms)
        await until(lambda: first.waiting > 0, what="the first forwarder holding the message")
        assert first.forwarded == 1  # the probe only
    finally:
        await producer.stop()
    first.stop()
    await asyncio.wait_for(running, 30)
    assert first.forwarded == 1
    assert await _records(settings, target) == []  # not delivered early, not lost either

    second = forwarder()
    running = asyncio.create_task(second.run())
    await until(lambda: second.forwarded > 0, what="the restarted forwarder delivering")
    second.stop()
    await asyncio.wait_for(running, 30)
    [(_offset, delivered_at_ms)] = await _records(settings, target)
    assert delivered_at_ms >= due_ms
    assert second.forwarded == 1  # and not the probe again

    # and the second forwarder committed it, so no later start forwards it again
    group = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group("delay"),
        enable_auto_commit=False,
    )
    await group.start()
    try:
        committed = [
            await group.committed(TopicPartition(tier, p)) for p in range(settings.partitions)
        ]
    finally:
        await group.stop()
    assert committed[0] == 2 and all(c is None for c in committed[1:])  # probe and message
