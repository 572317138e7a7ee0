"""Subscribe handlers on FastStream's ``KafkaBroker`` with commit-after-success.

Each subscription is one aiokafka consumer in its own group, handling one
record at a time (so nothing is ever committed past a record still in
flight). FastStream's acknowledgement is set to ``MANUAL`` and this module owns
it: after the handler returns, the record's own offset (``offset + 1``) is
committed explicitly; when the handler raises, the :data:`FailurePolicy`
decides, and ``REDELIVER`` seeks the partition back to the record and pauses it
for ``redelivery_pause_ms`` instead of spinning on it.

Why not FastStream's own policies: its default acks before the handler runs
(at-most-once), ``ACK`` commits even when the handler raised, and
``NACK_ON_ERROR`` seeks straight back with no pause.

A commit can fail during a rebalance (``CommitFailedError``) or while the
broker is away; the record is then delivered again later, which idempotent
handlers tolerate, so the failure is logged and consumption goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage, Topic
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from stovepipe.messaging import headers as hdr
from stovepipe.messaging.assignment import AssignmentLog
from stovepipe.messaging.broker import transport_limit
from stovepipe.messaging.codec import MalformedMessage, decode
from stovepipe.messaging.delivery import Delivery, current_delivery
from stovepipe.messaging.failure import FailurePolicy, Outcome, redeliver
from stovepipe.messaging.pacing import FetchPacer
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import TopicSpec, spec
from stovepipe.telemetry.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)

DeliveryHandler = Callable[[Any, Delivery], Awaitable[None]]
"""A handler: the decoded payload and where it came from. Returning means done."""


class Subscription(Protocol):
    """What we use of FastStream's subscriber: ``start()``/``stop()`` it when it was
    registered after the broker started. A protocol, so no private FastStream type
    is imported."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Consumer:
    """Registers subscriptions on a shared broker and settles each record exactly once.

    ``failure_policy`` is read on every failure, so it may be replaced after
    subscriptions exist.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        settings: KafkaSettings,
        *,
        failure_policy: FailurePolicy = redeliver,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self.failure_policy = failure_policy
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._resumes: dict[tuple[int, TopicPartition], asyncio.TimerHandle] = {}
        self.pacer = FetchPacer(
            settings.fetch_max_wait_ms, settings.idle_fetch_max_wait_ms, settings.idle_after_s
        )

    def subscribe(self, topic: str, handler: DeliveryHandler, *, group: str) -> Subscription:
        """Consume the logical ``topic`` in consumer group ``group``; returns the subscriber.

        Subscribe before the broker starts, or ``await subscriber.start()``
        afterwards. The topic is declared with the configured partition count in
        case nobody created it yet.
        """
        binding = spec(topic)
        settings = self._settings
        subscriber = self._broker.subscriber(
            Topic(
                settings.topic(topic),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            ),
            group_id=settings.group(group),
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=transport_limit(settings),
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            listener=AssignmentLog(settings.group(group)),
            no_reply=True,
        )

        async def on_record(message: KafkaMessage) -> None:
            await self._settle(binding, handler, message)

        subscriber(on_record, parser=_tolerant_parser, decoder=_undecoded)
        return subscriber

    def pace(self, subscriber: Subscription) -> None:
        """Slow ``subscriber``'s fetches down while it is idle (call once it started)."""
        consumer = getattr(subscriber, "consumer", None)
        if consumer is not None:
            self.pacer.track(consumer)

    def close(self) -> None:
        """Forget pending resumes of paused partitions (their consumers are going away)."""
        self.pacer.close()
        for handle in self._resumes.values():
            handle.cancel()
        self._resumes.clear()

    async def _settle(
        self, binding: TopicSpec, handler: DeliveryHandler, message: KafkaMessage
    ) -> None:
        with self.pacer.handling(message.consumer):
            await self._settle_paced(binding, handler, message)

    async def _settle_paced(
        self, binding: TopicSpec, handler: DeliveryHandler, message: KafkaMessage
    ) -> None:
        record = message.raw_message
        delivery = Delivery.from_record(record)
        with self._tracer.start_as_current_span(
            f"process {binding.name}",
            context=hdr.trace_context(delivery.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": delivery.topic,
                "messaging.destination.partition.id": str(delivery.partition),
                "messaging.kafka.offset": delivery.offset,
                "stovepipe.attempt": delivery.attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = current_delivery.set(delivery)
            try:
                payload = decode(
                    binding,
                    delivery.value,
                    self._settings.max_message_bytes,
                    declared_type=delivery.headers.get(hdr.PAYLOAD_TYPE),
                )
                await handler(payload, delivery)
            except asyncio.CancelledError:
                self._rewind(message, delivery, pause=False)
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, hdr.failure_reason(error)))
                await self._fail(error, binding, delivery, message)
                return
            finally:
                current_delivery.reset(token)
        await self._commit(message, delivery)
        _observe_lag(binding, message, delivery)

    async def _fail(
        self, error: Exception, binding: TopicSpec, delivery: Delivery, message: KafkaMessage
    ) -> None:
        log.log(
            logging.ERROR if isinstance(error, MalformedMessage) else logging.WARNING,
            "handler failed on %s[%d]@%d (attempt %d): %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            delivery.attempt,
            hdr.failure_reason(error),
        )
        try:
            outcome = await self.failure_policy(error, binding, delivery)
        except Exception:
            log.exception("the failure policy failed; the record will be delivered again")
            outcome = Outcome.REDELIVER
        if outcome is Outcome.SETTLED:
            await self._commit(message, delivery)
        else:
            self._rewind(message, delivery, pause=True)

    async def _commit(self, message: KafkaMessage, delivery: Delivery) -> None:
        consumer = message.consumer
        if not isinstance(consumer, AIOKafkaConsumer):
            await message.ack()
            return
        await commit_offset(consumer, delivery, self._settings.request_timeout_ms / 1000)

    def _rewind(self, message: KafkaMessage, delivery: Delivery, *, pause: bool) -> None:
        consumer = message.consumer
        if not isinstance(consumer, AIOKafkaConsumer):
            return
        partition = TopicPartition(delivery.topic, delivery.partition)
        try:
            consumer.seek(partition, delivery.offset)
            if pause and self._settings.redelivery_pause_ms:
                consumer.pause(partition)
                self._resume_later(consumer, partition)
        except IllegalStateError:
            log.info("%s was revoked meanwhile; its next owner starts before the record", partition)

    def _resume_later(self, consumer: AIOKafkaConsumer, partition: TopicPartition) -> None:
        slot = (id(consumer), partition)
        if (earlier := self._resumes.pop(slot, None)) is not None:
            earlier.cancel()

        def resume() -> None:
            self._resumes.pop(slot, None)
            if partition in consumer.assignment():
                with contextlib.suppress(IllegalStateError):
                    consumer.resume(partition)

        loop = asyncio.get_running_loop()
        self._resumes[slot] = loop.call_later(self._settings.redelivery_pause_ms / 1000, resume)


async def commit_offset(consumer: Any, delivery: Delivery, timeout_s: float) -> bool:
    """Commit past ``delivery`` on its partition; ``False`` (logged) when the commit failed.

    A failed commit only means the record may be delivered again, so rebalances
    (``CommitFailedError``, revoked partitions), broker errors and timeouts are
    tolerated rather than raised.
    """
    partition = TopicPartition(delivery.topic, delivery.partition)
    try:
        await asyncio.wait_for(consumer.commit({partition: delivery.offset + 1}), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "commit of %s@%d failed (%s); the record may be delivered again",
            partition,
            delivery.offset,
            hdr.failure_reason(exc),
        )
        return False
    return True


def _observe_lag(binding: TopicSpec, message: KafkaMessage, delivery: Delivery) -> None:
    """Records left behind this one on its partition, as the consumer last fetched it."""
    consumer = message.consumer
    if not isinstance(consumer, AIOKafkaConsumer):
        return
    highwater = consumer.highwater(TopicPartition(delivery.topic, delivery.partition))
    if highwater is not None:
        lag = max(0, highwater - delivery.offset - 1)
        CONSUMER_LAG.labels(binding.name, str(delivery.partition)).set(lag)


async def _tolerant_parser(record: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes header values as strict UTF-8 and would drop the record otherwise."""
    headers = [
        (name, (value or b"").decode("utf-8", "replace").encode())
        for name, value in record.headers or ()
    ]
    return await original(dataclasses.replace(record, headers=headers))


def _undecoded(message: Any) -> Any:
    """The raw bytes: FastStream must not guess JSON from a content type; the codec decodes."""
    return message.body
