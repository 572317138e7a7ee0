"""What only a real Kafka-protocol broker can show: redelivery, commits, order, partitions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from harness.messaging import (
    Inbox,
    PolicyProbe,
    committed_offset,
    placed,
    process_message,
)
from plugins.broker import settings_for_test
from stovepipe.embedded import EmbeddedBroker
from stovepipe.messaging import (
    PIPELINE_TOPICS,
    Bus,
    Delivery,
    KafkaSettings,
    MalformedMessage,
    Outcome,
    ensure_topics,
    topic_partitions,
)
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.broker

PROCESS = "stovepipe.process"
BUILD = "stovepipe.build"


async def _bus_for(settings: KafkaSettings, **kwargs: Any) -> Bus:
    await ensure_topics(settings, PIPELINE_TOPICS)
    return Bus(settings, **kwargs)


async def test_a_failed_record_comes_back_and_its_offset_waits_for_success(
    kafka_settings: KafkaSettings,
) -> None:
    deliveries: list[Delivery] = []
    committed_while_retrying: list[int | None] = []
    inbox = Inbox()

    async def fails_once(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
        deliveries.append(delivery)
        if len(deliveries) == 1:
            raise ConnectionError("storage unavailable")
        committed_while_retrying.append(
            await committed_offset(kafka_settings, PROCESS, "retry", delivery.partition)
        )
        await inbox.add(payload, delivery)

    bus = await _bus_for(kafka_settings)
    bus.consumer.subscribe(PROCESS, fails_once, group="retry")
    async with bus:
        published = await bus.publish(PROCESS, process_message(1))
        await inbox.wait_for(1)

        async def committed_past_it() -> bool:
            partition, offset = placed(published)
            return await committed_offset(kafka_settings, PROCESS, "retry", partition) == offset + 1

        await until(committed_past_it, what="commit after the successful retry")

    first, second = deliveries
    assert (first.partition, first.offset) == (second.partition, second.offset)
    assert (first.partition, first.offset) == (published.partition, published.offset)
    assert inbox.payloads == [process_message(1)]
    assert committed_while_retrying == [None]


async def test_a_redelivery_waits_for_the_configured_pause(kafka_settings: KafkaSettings) -> None:
    settings = replace(kafka_settings, redelivery_pause_ms=400)
    seen_at: list[float] = []
    inbox = Inbox()
    loop = asyncio.get_running_loop()

    async def fails_once(payload: Any, delivery: Delivery) -> None:
        seen_at.append(loop.time())
        if len(seen_at) == 1:
            raise TimeoutError("runner slow")
        await inbox.add(payload, delivery)

    bus = await _bus_for(settings)
    bus.consumer.subscribe(PROCESS, fails_once, group="pause")
    async with bus:
        await bus.publish(PROCESS, process_message(2))
        await inbox.wait_for(1)
    assert seen_at[1] - seen_at[0] >= 0.4


async def test_records_with_one_key_keep_their_order_through_a_retry(
    kafka_settings: KafkaSettings,
) -> None:
    failed: set[str] = set()
    inbox = Inbox()

    async def fails_fifth_once(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
        if payload.request_id == "request/q/5" and payload.request_id not in failed:
            failed.add(payload.request_id)
            raise ConnectionError("version race")
        await inbox.add(payload, delivery)

    bus = await _bus_for(kafka_settings)
    bus.consumer.subscribe(PROCESS, fails_fifth_once, group="order")
    async with bus:
        for n in range(1, 21):
            await bus.publish(PROCESS, process_message(n))
        await inbox.wait_for(20)
    assert [p.request_id for p in inbox.payloads] == [f"request/q/{n}" for n in range(1, 21)]
    assert len({d.partition for _, d in inbox.items}) == 1


async def test_records_published_before_the_subscriber_started_are_consumed(
    kafka_settings: KafkaSettings,
) -> None:
    producer = await _bus_for(kafka_settings)
    async with producer:
        await producer.publish(PROCESS, process_message(1))
    inbox = Inbox()
    consumer = Bus(kafka_settings)
    subscriber = consumer.consumer.subscribe(PROCESS, inbox.handler, group="late")
    async with consumer:
        # FastStream derives it from MANUAL (its subscriber is typed as our Subscription)
        assert cast(Any, subscriber).consumer._enable_auto_commit is False
        await inbox.wait_for(1)
    assert inbox.payloads == [process_message(1)]


async def test_a_record_the_policy_settles_is_committed(kafka_settings: KafkaSettings) -> None:
    policy = PolicyProbe(Outcome.SETTLED)
    bus = await _bus_for(kafka_settings, failure_policy=policy)
    bus.consumer.subscribe(PROCESS, Inbox().handler, group="settle")
    async with bus:
        published = await bus.publish_raw(
            kafka_settings.topic(PROCESS), b"\x08garbage", key=b"q", headers={}
        )
        await policy.wait_for(1)

        async def committed() -> bool:
            partition, offset = placed(published)
            return (
                await committed_offset(kafka_settings, PROCESS, "settle", partition) == offset + 1
            )

        await until(committed, what="commit past the settled record")
    assert isinstance(policy.calls[0][0], MalformedMessage)


async def test_a_failing_policy_means_the_record_comes_back(kafka_settings: KafkaSettings) -> None:
    asked: list[int] = []

    async def broken_policy(error: BaseException, topic: Any, delivery: Delivery) -> Outcome:
        asked.append(delivery.offset)
        raise RuntimeError("dead-letter topic unavailable")

    inbox = Inbox()
    calls: list[int] = []

    async def fails_once(payload: Any, delivery: Delivery) -> None:
        calls.append(delivery.offset)
        if len(calls) == 1:
            raise ConnectionError("flaky")
        await inbox.add(payload, delivery)

    bus = await _bus_for(kafka_settings, failure_policy=broken_policy)
    bus.consumer.subscribe(PROCESS, fails_once, group="broken-policy")
    async with bus:
        await bus.publish(PROCESS, process_message(3))
        await inbox.wait_for(1)
    assert len(asked) == 1
    assert calls == [asked[0], asked[0]]


async def test_topics_get_the_configured_partitions_and_creation_is_idempotent(
    kafka_settings: KafkaSettings,
) -> None:
    five = replace(kafka_settings, partitions=5)
    created = await ensure_topics(five, ["stovepipe.record", "stovepipe.record.dlq"])
    again = await ensure_topics(five, ["stovepipe.record", "stovepipe.record.dlq"])
    three = replace(kafka_settings, partitions=3)
    await ensure_topics(three, ["stovepipe.record", "stovepipe.analyze"])

    physical = kafka_settings.topic("stovepipe.record")
    assert created == [physical, kafka_settings.topic("stovepipe.record.dlq")]
    assert again == []
    assert await topic_partitions(kafka_settings, ["stovepipe.record", "stovepipe.analyze"]) == {
        physical: 5,
        kafka_settings.topic("stovepipe.analyze"): 3,
    }


async def test_keys_spread_over_partitions_and_stay_put(kafka_settings: KafkaSettings) -> None:
    settings = replace(kafka_settings, partitions=4)
    bus = await _bus_for(settings)
    async with bus:
        first = [await bus.publish(PROCESS, process_message(1, f"queue-{n}")) for n in range(12)]
        second = [await bus.publish(PROCESS, process_message(2, f"queue-{n}")) for n in range(12)]
    assert [p.partition for p in first] == [p.partition for p in second]
    assert len({p.partition for p in first}) > 1


async def test_stop_is_bounded_when_the_broker_is_gone(embedded_broker: EmbeddedBroker) -> None:
    settings = replace(
        _private_settings(embedded_broker), graceful_timeout_s=1.0, close_timeout_s=2.0
    )
    inbox = Inbox()
    bus = await _bus_for(settings)
    bus.consumer.subscribe(PROCESS, inbox.handler, group="gone")
    await bus.start()
    await bus.publish(PROCESS, process_message(1))
    await inbox.wait_for(1)
    await embedded_broker.kill()

    loop = asyncio.get_running_loop()
    began = loop.time()
    await bus.stop()
    assert loop.time() - began <= settings.stop_timeout_s + 1.0


async def test_a_handler_outliving_the_grace_period_is_cancelled_and_redelivered(
    kafka_settings: KafkaSettings,
) -> None:
    settings = replace(kafka_settings, graceful_timeout_s=0.5)
    started = asyncio.Event()
    cancelled: list[int] = []

    async def never_finishes(_payload: Any, delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(delivery.offset)
            raise

    first = await _bus_for(settings)
    first.consumer.subscribe(PROCESS, never_finishes, group="handover")
    await first.start()
    published = await first.publish(PROCESS, process_message(9))
    await asyncio.wait_for(started.wait(), 30)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await first.stop()
    assert loop.time() - began <= settings.stop_timeout_s + 1.0
    assert cancelled == [published.offset]

    inbox = Inbox()
    second = Bus(settings)
    second.consumer.subscribe(PROCESS, inbox.handler, group="handover")
    async with second:
        [(payload, delivery)] = await inbox.wait_for(1)
    assert payload == process_message(9)
    assert delivery.offset == published.offset


def _private_settings(broker: EmbeddedBroker) -> KafkaSettings:
    return settings_for_test(broker.bootstrap_servers, embedded=True)


async def test_stop_lets_an_in_flight_handler_finish_and_commits_it(
    kafka_settings: KafkaSettings,
) -> None:
    """SIGTERM's path: the handler mid-way completes, its offset is committed, and the
    next consumer of the group starts after it (no double apply), losing nothing."""
    settings = replace(kafka_settings, graceful_timeout_s=10.0)
    started = asyncio.Event()
    finish = asyncio.Event()
    applied: list[tuple[int, int]] = []

    async def slow(_payload: Any, delivery: Delivery) -> None:
        started.set()
        await finish.wait()
        applied.append((delivery.partition, delivery.offset))

    first = await _bus_for(settings)
    first.consumer.subscribe(PROCESS, slow, group="drain")
    await first.start()
    published = await first.publish(PROCESS, process_message(1))
    await asyncio.wait_for(started.wait(), 30)
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.3)
    assert not stopping.done()  # the stop is waiting for the handler, not abandoning it
    finish.set()
    await stopping
    partition, offset = placed(published)
    assert applied == [(partition, offset)]
    assert await committed_offset(settings, PROCESS, "drain", partition) == offset + 1

    inbox = Inbox()
    second = Bus(settings)
    second.consumer.subscribe(PROCESS, inbox.handler, group="drain")
    async with second:
        after = await second.publish(PROCESS, process_message(2))  # same key, same partition
        [(payload, delivery)] = await inbox.wait_for(1)
    assert payload == process_message(2)
    assert (delivery.partition, delivery.offset) == (after.partition, after.offset)
    assert placed(after) == (partition, offset + 1)


async def test_a_record_reaches_its_handler_without_a_thread_hop(
    kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastStream runs any plain function of its consume path in a worker thread; each
    such hop costs two wake-ups of the event loop per record (issue 14's profile), so
    the consume path is coroutines only. A sync parser or decoder fails here."""
    import anyio.to_thread

    hops: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    bus = await _bus_for(kafka_settings)
    inbox = Inbox()
    bus.consumer.subscribe(PROCESS, inbox.add, group="no-thread-hop")
    async with bus:
        for n in range(5):
            await bus.publish(PROCESS, process_message(n))
        await inbox.wait_for(5)
    received = sorted(p.SerializeToString() for p in inbox.payloads)
    assert received == sorted(process_message(n).SerializeToString() for n in range(5))
    assert hops == []


async def test_topics_of_one_group_share_one_consumer_and_each_record_keeps_its_topic(
    kafka_settings: KafkaSettings,
) -> None:
    """The reconciler reads every dead-letter topic in one group: one consumer, one fetch
    loop and one membership, each record decoded as its own topic's message type."""
    bus = await _bus_for(kafka_settings)
    inbox = Inbox()
    subscriber = bus.consumer.subscribe([PROCESS, BUILD], inbox.add, group="two-topics")
    async with bus:
        consumer = cast(Any, subscriber).consumer
        await until(
            lambda: (
                {tp.topic for tp in consumer.assignment()}
                == {kafka_settings.topic(PROCESS), kafka_settings.topic(BUILD)}
            ),
            what="one consumer assigned both topics",
        )
        await bus.publish(PROCESS, process_message(1))
        await bus.publish(BUILD, topics_pb2.BuildMessage(request_id="request/q/2", queue="q"))
        await inbox.wait_for(2)
    by_topic = {delivery.topic: payload for payload, delivery in inbox.items}
    assert by_topic[kafka_settings.topic(PROCESS)] == process_message(1)
    assert isinstance(by_topic[kafka_settings.topic(BUILD)], topics_pb2.BuildMessage)
    assert by_topic[kafka_settings.topic(BUILD)].request_id == "request/q/2"


async def test_stage_messaging_starts_one_consumer_per_group_and_routes_by_topic(
    kafka_settings: KafkaSettings,
) -> None:
    """``worker reconcile`` (and ``worker all``) consume every dead-letter topic in one
    group: ``consuming`` must start one consumer for the group and hand each record to
    its own topic's handler."""
    from stovepipe.failures import OnFailure
    from stovepipe.runtime.stage_messaging import StageMessaging

    bus = await _bus_for(kafka_settings)
    got: dict[str, list[Any]] = {PROCESS: [], BUILD: []}

    def handler(topic: str) -> Any:
        async def handle(payload: Any, _delivery: Delivery) -> None:
            got[topic].append(payload)

        return handle

    rules = dict.fromkeys((PROCESS, BUILD), (OnFailure.PARK_UNREADABLE, None))
    messaging = StageMessaging(bus, rules)
    async with (
        bus,
        messaging.consuming(
            [(PROCESS, "one-group", handler(PROCESS)), (BUILD, "one-group", handler(BUILD))]
        ),
    ):
        assert len(bus.consumer._flows) == 1
        await bus.publish(PROCESS, process_message(7))
        await bus.publish(BUILD, topics_pb2.BuildMessage(request_id="request/q/8", queue="q"))
        await until(lambda: len(got[PROCESS]) == 1 and len(got[BUILD]) == 1)
    assert got[PROCESS] == [process_message(7)]
    assert got[BUILD][0].request_id == "request/q/8"
