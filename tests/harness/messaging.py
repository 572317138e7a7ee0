"""Run the same messaging tests on FastStream's in-memory broker and on a real one.

A harness builds a :class:`Bus` and runs it: on the in-memory broker through
``TestKafkaBroker`` (handlers run inside ``publish``), on the real broker after
creating the topics. :class:`Inbox` lets a test wait for deliveries on a
condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import TestKafkaBroker
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.messaging import (
    PIPELINE_TOPICS,
    Bus,
    Delivery,
    FailurePolicy,
    KafkaSettings,
    Published,
    ensure_topics,
    redeliver,
)
from stovepipe.v1 import topics_pb2

DEADLINE_S = 30.0

SAMPLES: dict[str, Message] = {
    "stovepipe.process": topics_pb2.ProcessMessage(request_id="request/q/1", queue="q"),
    "stovepipe.build": topics_pb2.BuildMessage(request_id="request/q/2", queue="q"),
    "stovepipe.buildsignal": topics_pb2.BuildSignalMessage(
        build_id="build-7", request_id="request/q/3", queue="q"
    ),
    "stovepipe.record": topics_pb2.RecordMessage(request_id="request/q/4", queue="q"),
    "stovepipe.analyze": topics_pb2.AnalyzeMessage(request_id="request/q/5", queue="q"),
    "stovepipe.hook": topics_pb2.HookEvent(
        id="event-1",
        source="stovepipe/q",
        data=topics_pb2.GreennessEventData(request_id="request/q/6", queue="q", green=True),
    ),
}
"""One valid payload per pipeline topic."""

EXPECTED_KEYS: dict[str, bytes] = {
    "stovepipe.process": b"q",
    "stovepipe.build": b"request/q/2",
    "stovepipe.buildsignal": b"build-7",
    "stovepipe.record": b"request/q/4",
    "stovepipe.analyze": b"request/q/5",
    "stovepipe.hook": b"request/q/6",
}
"""The partition key DESIGN.md section 3 gives each topic, for the samples above."""


def process_message(n: int, queue: str = "q") -> topics_pb2.ProcessMessage:
    return topics_pb2.ProcessMessage(request_id=f"request/{queue}/{n}", queue=queue)


@dataclass
class Inbox:
    """What a handler received, and a way to wait until enough has arrived."""

    items: list[tuple[Any, Delivery]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, payload: Any, delivery: Delivery) -> None:
        async with self._changed:
            self.items.append((payload, delivery))
            self._changed.notify_all()

    async def handler(self, payload: Any, delivery: Delivery) -> None:
        await self.add(payload, delivery)

    async def wait_for(
        self, count: int, timeout_s: float = DEADLINE_S
    ) -> list[tuple[Any, Delivery]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.items) >= count), timeout_s
            )
        return list(self.items)

    @property
    def payloads(self) -> list[Any]:
        return [payload for payload, _ in self.items]


@dataclass
class PolicyProbe:
    """A failure policy that records what it was asked and answers with ``outcome``."""

    outcome: Any
    calls: list[tuple[BaseException, str, Delivery]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, error: BaseException, topic: Any, delivery: Delivery) -> Any:
        async with self._changed:
            self.calls.append((error, topic.name, delivery))
            self._changed.notify_all()
        return self.outcome

    async def wait_for(self, count: int, timeout_s: float = DEADLINE_S) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.calls) >= count), timeout_s
            )


class Harness:
    """How a test gets a running :class:`Bus`; ``real`` says whether records hit a broker."""

    name: str
    real: bool
    settings: KafkaSettings

    def bus(
        self,
        *,
        failure_policy: FailurePolicy = redeliver,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> Bus:
        return Bus(self.settings, failure_policy=failure_policy, tracer_provider=tracer_provider)

    def running(self, bus: Bus) -> Any:
        raise NotImplementedError


class MemoryHarness(Harness):
    name = "memory"
    real = False

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    @asynccontextmanager
    async def running(self, bus: Bus) -> AsyncIterator[Bus]:
        async with TestKafkaBroker(bus.broker):
            yield bus
        bus.consumer.close()


class KafkaHarness(Harness):
    name = "kafka"
    real = True

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    @asynccontextmanager
    async def running(self, bus: Bus) -> AsyncIterator[Bus]:
        await ensure_topics(self.settings, PIPELINE_TOPICS)
        async with bus:
            yield bus


def placed(published: Published) -> tuple[int, int]:
    """Where a publish landed: (partition, offset), which a real broker always reports."""
    assert published.partition is not None and published.offset is not None, published
    return published.partition, published.offset


async def committed_offset(
    settings: KafkaSettings, topic: str, group: str, partition: int
) -> int | None:
    """The group's committed offset, read by a consumer that never joins the group."""
    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(),
        group_id=settings.group(group),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(
            TopicPartition(settings.topic(topic), partition)
        )
        return offset
    finally:
        await consumer.stop()
