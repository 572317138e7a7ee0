"""Graceful shutdown: SIGTERM drains in-flight work; a restart neither loses nor repeats.

Workers run as real processes on the real broker and PostgreSQL (the fault
stack); each test stops one with SIGTERM while its handler is inside an
extension call, lets the call finish, and checks that the worker exited 0, that
the handler's effect happened once (the extension saw exactly one call, which a
redelivery would repeat), and that the head reached its true verdict. The
delay forwarder is stopped while it holds a message that is not yet due; the
next forwarder delivers it once, and not early. The Bus-level drain (handler
completes and commits; a handler outliving the grace period is cancelled and
redelivered) is in ``tests/messaging/test_real_broker.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stovepipe.delays import DEFAULT_TIERS_S, HEADER_NOT_BEFORE, HEADER_TARGET, DelayForwarder
from stovepipe.delays.tiers import tier_topic
from stovepipe.messaging import KafkaSettings, ensure_topics
from stovepipe.testing.chaos_proxy import Fault
from stovepipe.testing.fault_checks import commit_of, settle, watching
from stovepipe.testing.fault_stack import FaultStack
from stovepipe.v1 import topics_pb2

HOOK = "stovepipe.hook"

# The extension call each stage's handler is caught inside.
HELD = {"build": ("runner", "Trigger"), "record": ("git", "Promote")}


async def times_applied(stack: FaultStack, stage: str, head: str) -> int:
    """How often the stage's handler ran to its end for ``head``, from outside evidence.

    build: the runner's Trigger calls (the sweeper never triggers). record: the hook
    events published for the head (Promote is also re-asserted by the sweeper, so
    its calls prove nothing).
    """
    if stage == "build":
        return stack.runner_proxy.calls["Trigger"]
    events = [topics_pb2.HookEvent.FromString(r.value or b"") for r in await stack.records(HOOK)]
    return sum(1 for e in events if e.data.request_id == head)


@pytest.mark.parametrize("stage", sorted(HELD))
async def test_sigterm_mid_handler_finishes_commits_and_exits_zero(
    stack: FaultStack, stage: str
) -> None:
    assert stack.store is not None
    proxy_name, method = HELD[stage]
    proxy = stack.git_proxy if proxy_name == "git" else stack.runner_proxy
    queue = stack.queue_names[0]
    async with watching(stack) as watch:
        proxy.set_fault(method, Fault.HOLD)
        head = await stack.push_and_ingest(queue, green=True)

        async def inside() -> bool:
            return proxy.calls_in_flight(method) > 0

        await stack.wait_until(inside, 60, f"worker-{stage} inside {method}")
        terminating = asyncio.create_task(stack.terminate(f"worker-{stage}"))
        await asyncio.sleep(0.5)
        assert not terminating.done()  # it waits for the handler instead of dying
        proxy.clear(method)
        assert await terminating == 0, stack.log_tail(f"worker-{stage}")
        child = stack.children[f"worker-{stage}"]

        async def back() -> bool:  # the keeper started it again and it joined its group
            ready = stack.log_tail(child.name, 400).count(f"worker {stage} ready")
            return child.alive and child.starts == 2 and ready == 2

        await stack.wait_until(back, 60, f"worker-{stage} restarted")
        await settle(stack, watch, [head])
        # the drained handler's offset was committed before the worker left ...
        topic = f"stovepipe.{stage}"
        held = next(r for r in await stack.records(topic) if head.encode() in (r.value or b""))
        assert (await stack.committed(topic, stage))[held.partition] > held.offset
        # ... so the restarted worker did not run it again
        assert await times_applied(stack, stage, head) == 1
        request = await stack.store.get_request(head)
        assert request is not None and request.state.value == "succeeded"
        fact = await stack.store.get_fact(queue, request.uri, "")
        assert fact is not None and fact.green
        assert stack.repos[queue].truth[commit_of(request.uri)] is True


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
    target = settings.topic("stovepipe.record")
    await ensure_topics(settings, [*(tier_topic(t) for t in DEFAULT_TIERS_S), "stovepipe.record"])
    # due well after the forwarder's group join (Tansu finishes a join after half the
    # session timeout), so the first forwarder is sure to see it early and hold it
    due_ms = int((time.time() + 15.0) * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(tier_topic(5.0)),
            b"payload",
            key=b"request/q/1",
            headers=[(HEADER_TARGET, target.encode()), (HEADER_NOT_BEFORE, str(due_ms).encode())],
        )
    finally:
        await producer.stop()

    def forwarder() -> DelayForwarder:
        return DelayForwarder(
            settings.bootstrap_servers,
            tiers,
            group_id=settings.group("delay"),
            allowed_targets=frozenset({target}),
        )

    first = forwarder()
    running = asyncio.create_task(first.run())
    deadline = time.monotonic() + 30
    while first.waiting == 0:
        assert first.forwarded == 0, "the message was due before the forwarder joined"
        assert time.monotonic() < deadline, "the forwarder never took the message"
        await asyncio.sleep(0.05)
    first.stop()
    await asyncio.wait_for(running, 30)
    assert first.forwarded == 0
    assert await _records(settings, target) == []  # not delivered early, not lost either

    second = forwarder()
    running = asyncio.create_task(second.run())
    deadline = time.monotonic() + 30
    while second.forwarded == 0:
        assert time.monotonic() < deadline, "the restarted forwarder never delivered"
        await asyncio.sleep(0.05)
    second.stop()
    await asyncio.wait_for(running, 30)
    [(_offset, delivered_at_ms)] = await _records(settings, target)
    assert delivered_at_ms >= due_ms

    # and the second forwarder committed it, so no later start forwards it again
    tier = settings.topic(tier_topic(5.0))
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
    assert sorted(c for c in committed if c is not None) == [1]
