"""The messaging layer on the real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from stovepipe.messaging import Bus, KafkaSettings, ensure_topics
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.broker


async def _until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def _committed(settings: KafkaSettings, topic: str, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group(group),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        name = settings.topic(topic)
        partitions = consumer.partitions_for_topic(name) or set()
        return {p: await consumer.committed(TopicPartition(name, p)) for p in partitions}
    finally:
        await consumer.stop()


async def _with_bus(
    settings: KafkaSettings, setup: Callable[[Bus], None], body: Callable[[Bus], Awaitable[None]]
) -> None:
    await ensure_topics(settings, ["stovepipe.process"])
    bus = Bus(settings)
    setup(bus)
    await bus.start()
    try:
        await body(bus)
    finally:
        await bus.stop()


async def test_published_protobuf_is_consumed(kafka_settings: KafkaSettings) -> None:
    seen: list[topics_pb2.ProcessMessage] = []

    async def handler(message: topics_pb2.ProcessMessage) -> None:
        seen.append(message)

    async def body(bus: Bus) -> None:
        await bus.publish(
            "stovepipe.process", topics_pb2.ProcessMessage(request_id="request/q/1", queue="q")
        )
        await _until(lambda: len(seen) == 1)

    await _with_bus(
        kafka_settings, lambda b: b.subscribe("stovepipe.process", handler, group="t"), body
    )
    assert seen[0] == topics_pb2.ProcessMessage(request_id="request/q/1", queue="q")


async def test_failed_handler_sees_the_message_again_and_offset_waits(
    kafka_settings: KafkaSettings,
) -> None:
    calls: list[str] = []
    release = asyncio.Event()
    committed_during_retry: dict[int, int | None] = {}

    async def handler(message: topics_pb2.ProcessMessage) -> None:
        calls.append(message.request_id)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        if len(calls) == 2:
            committed_during_retry.update(
                await _committed(kafka_settings, "stovepipe.process", "fail-once")
            )
            release.set()

    async def body(bus: Bus) -> None:
        await bus.publish(
            "stovepipe.process", topics_pb2.ProcessMessage(request_id="request/q/7", queue="q")
        )
        await _until(release.is_set)
        await _until(lambda: len(calls) >= 2)

    await _with_bus(
        kafka_settings, lambda b: b.subscribe("stovepipe.process", handler, group="fail-once"), body
    )
    assert calls[:2] == ["request/q/7", "request/q/7"]
    assert all(offset in (None, 0) for offset in committed_during_retry.values()), (
        committed_during_retry
    )
    after = await _committed(kafka_settings, "stovepipe.process", "fail-once")
    assert sorted(o for o in after.values() if o) == [1]


async def test_trace_context_travels_with_the_message(kafka_settings: KafkaSettings) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    seen_trace: list[int] = []

    async def handler(_message: topics_pb2.ProcessMessage) -> None:
        seen_trace.append(trace.get_current_span().get_span_context().trace_id)

    async def body(bus: Bus) -> None:
        import stovepipe.messaging.bus as bus_module

        original = bus_module.tracer
        bus_module.tracer = tracer  # type: ignore[assignment]
        try:
            with tracer.start_as_current_span("producer") as span:
                sent = span.get_span_context().trace_id
                await bus.publish(
                    "stovepipe.process",
                    topics_pb2.ProcessMessage(request_id="request/q/2", queue="q"),
                )
            await _until(lambda: len(seen_trace) == 1)
        finally:
            bus_module.tracer = original
        assert seen_trace == [sent]

    await _with_bus(
        kafka_settings, lambda b: b.subscribe("stovepipe.process", handler, group="trace"), body
    )


async def test_topics_are_created_with_the_configured_partitions(
    kafka_settings: KafkaSettings,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    await ensure_topics(kafka_settings, ["stovepipe.record"])
    await ensure_topics(kafka_settings, ["stovepipe.record"])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([kafka_settings.topic("stovepipe.record")])
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == kafka_settings.partitions
