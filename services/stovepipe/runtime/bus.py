"""The bus a process uses: the messaging ``Bus`` plus delays, retries and events.

It implements the stages' ``Publisher`` and ``DelayedPublisher`` ports, installs
the failure policy (retryable errors come back through a delay tier with
``attempt + 1`` up to the stage's maximum; everything else, and exhausted
retries, go to ``<topic>.dlq``), and offers the API a live event feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import MessageSizeTooLargeError
from google.protobuf.message import Message

from stovepipe.config import StovepipeConfig
from stovepipe.delays import (
    DEFAULT_TIERS_S,
    HEADER_NOT_BEFORE,
    HEADER_TARGET,
    DelayForwarder,
    choose_tier,
    tier_topic,
)
from stovepipe.failures import Verdict, classify, short_reason
from stovepipe.messaging import (
    HOOK,
    PIPELINE_TOPICS,
    Bus,
    Delivery,
    KafkaSettings,
    MalformedMessage,
    Outcome,
    TopicSpec,
    decode,
    dlq,
    encode,
    ensure_topics,
    poison,
    spec,
)
from stovepipe.messaging import headers as hdr
from stovepipe.messaging.broker import transport_limit
from stovepipe.runtime.broker_watch import EPOCH_TOPIC
from stovepipe.stages.ports import Handler
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

STAGE_OF_TOPIC = {
    "stovepipe.process": "process",
    "stovepipe.build": "build",
    "stovepipe.buildsignal": "buildsignal",
    "stovepipe.record": "record",
}


def kafka_settings(config: StovepipeConfig, client_id: str) -> KafkaSettings:
    k = config.kafka
    if not k.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is empty; `stovepipe up` fills it in for you")
    return KafkaSettings(
        bootstrap_servers=k.bootstrap_servers,
        client_id=client_id,
        topic_prefix=k.topic_prefix,
        partitions=k.partitions,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        max_message_bytes=k.max_message_bytes,
        group_prefix=k.group_prefix,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        graceful_timeout_s=k.graceful_timeout_seconds,
        redelivery_pause_ms=k.redelivery_pause_ms,
    )


def all_topics() -> list[str]:
    names = [t.name for t in PIPELINE_TOPICS]
    return [
        *names,
        EPOCH_TOPIC,
        *(dlq(n) for n in names),
        *(poison(n) for n in names),
        *(tier_topic(t) for t in DEFAULT_TIERS_S),
    ]


class PipelineBus:
    """Ports for the stages over one ``Bus``."""

    def __init__(self, config: StovepipeConfig, bus: Bus) -> None:
        self.config = config
        self.bus = bus
        self.settings = bus.settings
        bus.failure_policy = self._on_failure

    async def publish(self, topic: str, message: Message) -> None:
        await self.bus.publish(topic, message)

    async def publish_after(self, topic: str, message: Message, delay_s: float) -> None:
        topic_spec = spec(topic)
        await self._to_tier(
            topic_spec,
            encode(topic_spec, message, self.settings.max_message_bytes),
            topic_spec.key(message).encode(),
            hdr.outgoing(1),
            delay_s,
        )

    async def _to_tier(
        self,
        topic: TopicSpec,
        data: bytes,
        key: bytes | None,
        headers: dict[str, str],
        delay_s: float,
    ) -> None:
        tier = choose_tier(delay_s)
        headers = {
            **headers,
            HEADER_TARGET: self.settings.topic(topic.name),
            HEADER_NOT_BEFORE: str(int((time.time() + tier) * 1000)),
        }
        await self.bus.publish_raw(
            self.settings.topic(tier_topic(tier)), data, key=key, headers=headers
        )

    async def _on_failure(
        self, exc: BaseException, topic: TopicSpec, delivery: Delivery
    ) -> Outcome:
        """Produce to the delay tier or the DLQ first; the caller then commits the original."""
        if topic.name.endswith(".dlq"):
            return await self._on_dead_letter_failure(exc, topic, delivery)
        stage = STAGE_OF_TOPIC.get(topic.name)
        policy = getattr(self.config.workers, stage) if stage else None
        reason = short_reason(exc)
        retry = not isinstance(exc, MalformedMessage) and classify(exc) is Verdict.RETRYABLE
        if retry and policy is not None and delivery.attempt < policy.max_attempts:
            backoff = min(
                policy.backoff_max_seconds,
                policy.backoff_initial_seconds * 2 ** (delivery.attempt - 1),
            )
            headers = {**delivery.headers, **hdr.outgoing(delivery.attempt + 1, reason)}
            await self._to_tier(topic, delivery.value, delivery.key, headers, backoff)
            return Outcome.SETTLED
        headers = {
            **delivery.headers,
            hdr.FAILURE_REASON: reason,
            "stovepipe-source-topic": delivery.topic,
        }
        await self._park(self.settings.topic(dlq(topic.name)), delivery, headers)
        return Outcome.SETTLED

    async def _on_dead_letter_failure(
        self, exc: BaseException, topic: TopicSpec, delivery: Delivery
    ) -> Outcome:
        """A dead letter is never dropped: unreadable ones are parked, others retried."""
        if not isinstance(exc, MalformedMessage):
            return Outcome.REDELIVER
        source = topic.name.removesuffix(".dlq")
        log.error(
            "poison dead letter parked: topic=%s partition=%d offset=%d: %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            short_reason(exc),
        )
        await self._park(
            self.settings.topic(poison(source)),
            delivery,
            {**delivery.headers, hdr.FAILURE_REASON: short_reason(exc)},
        )
        return Outcome.SETTLED

    async def _park(self, target: str, delivery: Delivery, headers: dict[str, str]) -> None:
        """Produce the record to a dead-letter or poison topic, as it is when it fits.

        A foreign producer can put a record on a topic that is bigger than our
        producer may send. Refusing to park it would redeliver it for ever and
        wedge its partition, so it is parked without its value (and, if even
        that is too big, without its key and foreign headers), marked with where
        it came from and how big it was.
        """
        try:
            await self.bus.publish_raw(target, delivery.value, key=delivery.key, headers=headers)
            return
        except MessageSizeTooLargeError as exc:
            log.error(
                "record too large to park as it is, parked without its value: "
                "topic=%s partition=%d offset=%d (%d bytes): %s",
                delivery.topic,
                delivery.partition,
                delivery.offset,
                len(delivery.value),
                short_reason(exc),
            )
        origin = {
            "stovepipe-source-topic": headers.get("stovepipe-source-topic", delivery.topic),
            "stovepipe-dropped-value-bytes": str(len(delivery.value)),
            hdr.FAILURE_REASON: headers.get(hdr.FAILURE_REASON, "too large"),
        }
        try:
            await self.bus.publish_raw(target, b"", key=delivery.key, headers={**headers, **origin})
        except MessageSizeTooLargeError:
            await self.bus.publish_raw(target, b"", key=None, headers=origin)

    @asynccontextmanager
    async def consume(self, topic: str, handler: Handler, *, group: str) -> AsyncIterator[None]:
        async with self.consume_all({group: (topic, handler)}):
            yield

    @asynccontextmanager
    async def consume_all(self, by_group: dict[str, tuple[str, Handler]]) -> AsyncIterator[None]:
        """Start one subscriber per group at once (group joins overlap), stop them on exit."""
        subscribers = [
            self.bus.subscribe(topic, handler, group=group)
            for group, (topic, handler) in by_group.items()
        ]
        await asyncio.gather(*(s.start() for s in subscribers))
        try:
            yield
        finally:
            await asyncio.wait_for(
                asyncio.gather(*(s.stop() for s in subscribers)),
                self.settings.graceful_timeout_s + 5,
            )

    def event_feed(self) -> EventFeed:
        return EventFeed(self.settings)


class EventFeed:
    """Green / not-green events from ``stovepipe.hook``, from now on, per subscriber."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    async def subscribe(self) -> AsyncIterator[topics_pb2.HookEvent]:
        consumer = AIOKafkaConsumer(
            self._settings.topic("stovepipe.hook"),
            bootstrap_servers=self._settings.bootstrap_servers,
            group_id=f"{self._settings.group('watch')}-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            async for record in consumer:
                try:  # the codec's checks: an empty or id-less record is not an event
                    event: topics_pb2.HookEvent = decode(
                        HOOK,
                        record.value,
                        self._settings.max_message_bytes,
                        declared_type=hdr.from_record(record.headers).get(hdr.PAYLOAD_TYPE),
                    )
                except MalformedMessage as exc:
                    log.warning(
                        "not an event, skipped: topic=%s partition=%d offset=%d: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        short_reason(exc),
                    )
                    continue
                yield event
        finally:
            await consumer.stop()


@asynccontextmanager
async def open_bus(config: StovepipeConfig, client_id: str) -> AsyncIterator[PipelineBus]:
    settings = kafka_settings(config, client_id)
    await ensure_topics(settings, all_topics())
    bus = Bus(settings)
    pipeline_bus = PipelineBus(config, bus)
    await bus.start()
    try:
        yield pipeline_bus
    finally:
        await bus.stop()


async def run_delay_forwarder(config: StovepipeConfig, stop: asyncio.Event) -> None:
    settings = kafka_settings(config, "stovepipe-delay")
    await ensure_topics(settings, all_topics())
    tiers = {settings.topic(tier_topic(t)): t for t in DEFAULT_TIERS_S}
    forwarder = DelayForwarder(
        settings.bootstrap_servers,
        list(tiers),
        group_id=settings.group("delay"),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        allowed_targets=frozenset(settings.topic(t.name) for t in PIPELINE_TOPICS),
        max_request_size=transport_limit(settings),
        tier_delays=tiers,
    )
    task = asyncio.create_task(forwarder.run())
    print("worker delay ready", flush=True)
    stopped = asyncio.create_task(stop.wait())
    # A forwarder that died must take the process with it (its supervisor restarts
    # it); waiting for ``stop`` alone would leave a live process forwarding nothing.
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    forwarder.stop()
    await task
