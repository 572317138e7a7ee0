"""Subscribe handlers on FastStream's ``KafkaBroker`` with commit-after-success.

Each subscription is one aiokafka consumer in its own group, for one topic or
several. Records are handled several at a time per partition, in order per
key, and only the highest *contiguous* completed offset is committed
(:mod:`.inflight`), so nothing is ever committed past a record still in flight. FastStream's
acknowledgement is set to ``MANUAL`` and this module owns it. When a handler
raises, the :data:`FailurePolicy` decides; ``REDELIVER`` runs the record again
after ``redelivery_pause_ms``, in place: its key's later records wait behind
it and the commit frontier stays before it, while other keys go on.

Why not FastStream's own policies: its default acks before the handler runs
(at-most-once), ``ACK`` commits even when the handler raised, and
``NACK_ON_ERROR`` seeks straight back with no pause.

A commit can fail during a rebalance (``CommitFailedError``) or while the
broker is away; the records are then delivered again later, which idempotent
handlers tolerate, so the failure is logged and consumption goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
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
from stovepipe.messaging.inflight import Flow, Window
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
        self._flows: dict[int, Flow] = {}
        self._fetch_waits: dict[int, int] = {}
        self.pacer = FetchPacer(
            settings.fetch_max_wait_ms, settings.idle_fetch_max_wait_ms, settings.idle_after_s
        )

    def subscribe(
        self,
        topic: str | Sequence[str],
        handler: DeliveryHandler,
        *,
        group: str,
        max_in_flight: int | None = None,
    ) -> Subscription:
        """Consume the logical ``topic`` (or several) in consumer group ``group``; returns
        the subscriber.

        Several topics share one consumer: one fetch loop, one heartbeat and one
        group membership for all of them (the reconciler reads every dead-letter
        topic this way). Up to ``max_in_flight`` records per partition are in
        flight at once (default: the settings'), in order per key. Subscribe
        before the broker starts, or ``await subscriber.start()`` afterwards.
        The topics are declared with the configured partition count in case
        nobody created them yet.
        """
        names = [topic] if isinstance(topic, str) else list(topic)
        if not names:
            raise ValueError("subscribe needs at least one topic")
        settings = self._settings
        bindings = {settings.topic(name): spec(name) for name in names}
        group_id = settings.group(group)
        fetch_wait_ms = max(
            settings.fetch_max_wait_ms, *(b.fetch_wait_ms or 0 for b in bindings.values())
        )

        async def handle(record: Any, window: Window) -> bool:
            binding = bindings[record.topic]
            return await self._settle(binding, handler, record, flow_consumer[0], window)

        flow = Flow(
            group_id,
            max_in_flight if max_in_flight is not None else settings.max_in_flight,
            handle,
            self._commit_offsets,
            settle_s=min(settings.graceful_timeout_s, settings.session_timeout_ms / 2000),
        )
        flow_consumer: list[Any] = [None]
        subscriber = self._broker.subscriber(
            *(
                Topic(
                    physical,
                    num_partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                )
                for physical in bindings
            ),
            group_id=group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,
            max_partition_fetch_bytes=transport_limit(settings),
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            listener=AssignmentLog(group_id, on_revoked=flow.revoke),
            no_reply=True,
        )

        async def on_record(message: KafkaMessage) -> None:
            consumer = message.consumer
            if not isinstance(consumer, AIOKafkaConsumer):
                # the in-memory test broker: one at a time, inside publish
                record: Any = message.raw_message
                if await self._settle(bindings[record.topic], handler, record, consumer, None):
                    await message.ack()
                return
            flow_consumer[0] = consumer
            flow.admit(consumer, message.raw_message)

        subscriber(on_record, parser=_tolerant_parser, decoder=_the_message)
        self._flows[id(subscriber)] = flow
        self._fetch_waits[id(subscriber)] = fetch_wait_ms
        return subscriber

    def flow(self, subscriber: Subscription) -> Flow:
        """The in-flight bookkeeping of ``subscriber`` (for draining, and tests)."""
        return self._flows[id(subscriber)]

    def pace(self, subscriber: Subscription) -> None:
        """Slow ``subscriber``'s fetches down while it is idle (call once it started)."""
        consumer = getattr(subscriber, "consumer", None)
        if consumer is not None:
            self.pacer.track(consumer, self._fetch_waits.get(id(subscriber)))

    async def drain(self, subscribers: list[Subscription] | None = None) -> None:
        """Let in-flight handlers finish for up to ``graceful_timeout_s`` and commit them.

        Handlers still running then are cancelled; their records are not
        committed and come back after the restart. Call before the subscribers stop.
        """
        flows = (
            list(self._flows.values())
            if subscribers is None
            else [f for s in subscribers if (f := self._flows.get(id(s))) is not None]
        )
        await asyncio.gather(*(flow.drain(self._settings.graceful_timeout_s) for flow in flows))

    def close(self) -> None:
        """Stop pacing (the consumers are going away)."""
        self.pacer.close()

    async def _settle(
        self,
        binding: TopicSpec,
        handler: DeliveryHandler,
        record: Any,
        consumer: Any,
        window: Window | None,
    ) -> bool:
        """Run the record until it is settled; ``False`` if it is left for redelivery."""
        delivery = Delivery.from_record(record)
        with self.pacer.handling(consumer):
            while True:
                if await self._attempt(binding, handler, delivery):
                    _observe_lag(binding, consumer, delivery)
                    return True
                if window is None:
                    return False
                await asyncio.sleep(self._settings.redelivery_pause_ms / 1000)
                if not window.accepting:
                    return False

    async def _attempt(
        self, binding: TopicSpec, handler: DeliveryHandler, delivery: Delivery
    ) -> bool:
        """One run of the handler; ``True`` when done or rerouted by the failure policy."""
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
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, hdr.failure_reason(error)))
                return await self._fail(error, binding, delivery)
            finally:
                current_delivery.reset(token)
        return True

    async def _fail(self, error: Exception, binding: TopicSpec, delivery: Delivery) -> bool:
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
        return outcome is Outcome.SETTLED

    async def _commit_offsets(self, consumer: Any, offsets: dict[TopicPartition, int]) -> bool:
        return await commit_offsets(consumer, offsets, self._settings.request_timeout_ms / 1000)


async def commit_offset(consumer: Any, delivery: Delivery, timeout_s: float) -> bool:
    """Commit past ``delivery`` on its partition; ``False`` (logged) when the commit failed."""
    partition = TopicPartition(delivery.topic, delivery.partition)
    return await commit_offsets(consumer, {partition: delivery.offset + 1}, timeout_s)


async def commit_offsets(
    consumer: Any, offsets: dict[TopicPartition, int], timeout_s: float
) -> bool:
    """Commit explicit ``offsets``; ``False`` (logged) when the commit failed.

    A failed commit only means records may be delivered again, so rebalances
    (``CommitFailedError``, revoked partitions), broker errors and timeouts are
    tolerated rather than raised.
    """
    try:
        await asyncio.wait_for(consumer.commit(offsets), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "commit of %s failed (%s); the records may be delivered again",
            ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in offsets.items()),
            hdr.failure_reason(exc),
        )
        return False
    return True


def _observe_lag(binding: TopicSpec, consumer: Any, delivery: Delivery) -> None:
    """Records left behind this one on its partition, as the consumer last fetched it."""
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


async def _the_message(message: Any) -> Any:
    """What FastStream hands the handler as the decoded body: the message itself.

    The broker runs without dependency injection (:func:`.broker.kafka_broker`),
    so this is how ``on_record`` reaches the record and its consumer; the payload
    is decoded later by :mod:`.codec` (FastStream must not guess JSON from a
    content type). A coroutine, because FastStream runs a plain function in a
    worker thread: a thread hop and two wake-ups of the event loop per record.
    """
    return message
