"""Publish and consume pipeline payloads over Kafka through FastStream.

Delivery is at-least-once: a subscriber uses manual acknowledgement, handles
one record at a time, and commits only after the handler (and any rerouting
the failure policy did) has finished. What happens after a failure is decided
in one place, the :data:`FailurePolicy`; the default redelivers the same record
(seek back, nothing committed past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.messaging import headers as hdr
from stovepipe.messaging.codec import MalformedMessage, decode, encode
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import TopicSpec, spec

log = logging.getLogger(__name__)
tracer = trace.get_tracer("stovepipe.messaging")

Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """Where a record came from, for handlers and failure policies."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Mapping[str, str]
    value: bytes

    @property
    def attempt(self) -> int:
        return hdr.attempt_of(self.headers)


current_delivery: contextvars.ContextVar[Delivery] = contextvars.ContextVar("current_delivery")
"""The record being handled, for handlers that need its headers (e.g. dead-letter reasons)."""


class Outcome(enum.Enum):
    REDELIVER = "redeliver"
    """Seek back: the same record is delivered again; nothing is committed past it."""
    SETTLED = "settled"
    """The policy rerouted the record (delay tier, dead letter): commit it."""


FailurePolicy = Callable[[BaseException, TopicSpec, Delivery], Awaitable[Outcome]]


async def redeliver(_exc: BaseException, _topic: TopicSpec, _delivery: Delivery) -> Outcome:
    return Outcome.REDELIVER


class Bus:
    """One producer plus any number of subscribers on a FastStream ``KafkaBroker``."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        failure_policy: FailurePolicy = redeliver,
        broker: KafkaBroker | None = None,
    ) -> None:
        self.settings = settings
        self.failure_policy = failure_policy
        self.broker = broker or KafkaBroker(
            settings.bootstrap_servers,
            client_id=settings.client_id,
            enable_idempotence=False,
            acks="all",
            request_timeout_ms=settings.request_timeout_ms,
            graceful_timeout=settings.graceful_timeout_s,
            log_level=logging.DEBUG,
        )
        self._started = False

    async def start(self) -> None:
        await self.broker.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await asyncio.wait_for(self.broker.stop(), self.settings.graceful_timeout_s + 10)

    async def publish(
        self,
        topic: str,
        message: Message,
        *,
        key: str | None = None,
        attempt: int = 1,
        failure_reason: str = "",
    ) -> None:
        """Encode ``message`` for ``topic``, derive the key, add headers, await the broker's ack."""
        topic_spec = spec(topic)
        data = encode(topic_spec, message, self.settings.max_message_bytes)
        with tracer.start_as_current_span(f"publish {topic}"):
            await self.publish_raw(
                self.settings.topic(topic),
                data,
                key=(key or topic_spec.key(message)).encode(),
                headers=hdr.outgoing(attempt, failure_reason),
            )

    async def publish_raw(
        self, topic: str, data: bytes, *, key: bytes | None, headers: Mapping[str, str]
    ) -> None:
        """Produce bytes to a physical topic name (already prefixed)."""
        await self.broker.publish(data, topic=topic, key=key, headers=dict(headers))

    def subscribe(self, topic: str, handler: Handler, *, group: str) -> Any:
        """Register ``handler`` for ``topic`` in consumer group ``group``; returns the subscriber.

        Register before :meth:`start`, or call ``await subscriber.start()`` afterwards.
        """
        topic_spec = spec(topic)
        subscriber = self.broker.subscriber(
            self.settings.topic(topic),
            group_id=self.settings.group(group),
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
        )

        async def consume(body: bytes, msg: KafkaMessage) -> None:
            await self._handle(topic_spec, handler, body, msg)

        subscriber(consume)
        return subscriber

    async def _handle(
        self, topic: TopicSpec, handler: Handler, body: bytes, msg: KafkaMessage
    ) -> None:
        raw = msg.raw_message
        assert not isinstance(raw, tuple)
        delivery = Delivery(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            headers={k: v.decode("utf-8", "replace") for k, v in raw.headers or ()},
            value=raw.value or b"",
        )
        context = hdr.trace_context(delivery.headers)
        with tracer.start_as_current_span(f"consume {topic.name}", context=context):
            token = current_delivery.set(delivery)
            try:
                payload = decode(topic, delivery.value, self.settings.max_message_bytes)
                await handler(payload)
            except asyncio.CancelledError:
                await msg.nack()
                raise
            except Exception as exc:
                await self._fail(exc, topic, delivery, msg)
                return
            finally:
                current_delivery.reset(token)
        await msg.ack()

    async def _fail(
        self, exc: BaseException, topic: TopicSpec, delivery: Delivery, msg: KafkaMessage
    ) -> None:
        level = logging.WARNING if not isinstance(exc, MalformedMessage) else logging.ERROR
        log.log(
            level,
            "handler failed on %s[%d]@%d (attempt %d): %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            delivery.attempt,
            exc,
        )
        try:
            outcome = await self.failure_policy(exc, topic, delivery)
        except Exception:
            log.exception("failure policy failed; redelivering")
            outcome = Outcome.REDELIVER
        if outcome is Outcome.SETTLED:
            await msg.ack()
        else:
            await msg.nack()


async def ensure_topics(settings: KafkaSettings, names: list[str]) -> None:
    """Create the physical topics (prefixed) with the configured partition count; idempotent."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in (settings.topic(n) for n in names)
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(Exception):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
