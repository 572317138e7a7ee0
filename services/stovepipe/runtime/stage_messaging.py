"""The stages' messaging ports over one :class:`~stovepipe.messaging.Bus`.

It publishes (``Publisher``), publishes after a delay through a tier topic
(``DelayedPublisher``), and carries out the failure decision of
:func:`stovepipe.failures.decide` for every consumed record: produce to the
delay tier, the dead-letter topic or the poison topic first, and only then let
the consumer commit the original (a failed delivery is never lost between the
two). The rules per topic come from the stage registry.

Every handler is wrapped here (:func:`stovepipe.telemetry.instrument.instrumented`),
so stages get their span attributes, log context and metrics without any code
of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.delays import HEADER_NOT_BEFORE, HEADER_TARGET, choose_tier, tier_topic
from stovepipe.failures import Action, OnFailure, RetryPolicy, decide, short_reason
from stovepipe.messaging import (
    Bus,
    Delivery,
    DeliveryHandler,
    Outcome,
    TopicSpec,
    dlq,
    encode,
    poison,
    spec,
)
from stovepipe.messaging import headers as hdr
from stovepipe.telemetry.instrument import instrumented
from stovepipe.telemetry.metrics import STAGE_RECORDS

log = logging.getLogger(__name__)

FailureRules = Mapping[str, tuple[OnFailure, RetryPolicy | None]]


class StageMessaging:
    """Publisher, delayed publisher and failure handling for the stages of one process."""

    def __init__(
        self, bus: Bus, rules: FailureRules, in_flight: Mapping[str, int] | None = None
    ) -> None:
        self.bus = bus
        self.settings = bus.settings
        self._rules = rules
        self._in_flight = dict(in_flight or {})
        self._stages: dict[str, str] = {}
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

    @asynccontextmanager
    async def consuming(
        self, subscriptions: Sequence[tuple[str, str, DeliveryHandler]]
    ) -> AsyncIterator[None]:
        """Start one consumer per consumer group of the ``(topic, group, handler)``
        entries, all at once (the topics of one group share its consumer); on exit,
        let their in-flight records settle and commit, then stop them."""
        by_group: dict[str, dict[str, DeliveryHandler]] = {}
        for topic, group, handler in subscriptions:
            self._stages.setdefault(topic, group)
            by_group.setdefault(group, {})[topic] = instrumented(topic, group, handler)
        subscribers = [
            self.bus.consumer.subscribe(
                list(handlers),
                self._dispatch(handlers),
                group=group,
                max_in_flight=max(
                    (n for t in handlers if (n := self._in_flight.get(t)) is not None),
                    default=None,
                ),
            )
            for group, handlers in by_group.items()
        ]
        await asyncio.gather(*(s.start() for s in subscribers))
        for subscriber in subscribers:
            self.bus.consumer.pace(subscriber)
        try:
            yield
        finally:
            await asyncio.wait_for(
                self.bus.consumer.drain(subscribers), self.settings.graceful_timeout_s + 5
            )
            await asyncio.wait_for(
                asyncio.gather(*(s.stop() for s in subscribers)),
                self.settings.graceful_timeout_s + 5,
            )

    def _dispatch(self, handlers: Mapping[str, DeliveryHandler]) -> DeliveryHandler:
        """The handler of a group's consumer: each record to its own topic's handler."""
        if len(handlers) == 1:
            return next(iter(handlers.values()))
        by_physical = {self.settings.topic(topic): h for topic, h in handlers.items()}

        async def dispatch(payload: Any, delivery: Delivery) -> None:
            await by_physical[delivery.topic](payload, delivery)

        return dispatch

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
        outcome, what = await self._carry_out(exc, topic, delivery)
        STAGE_RECORDS.labels(self._stages.get(topic.name, ""), topic.name, what).inc()
        trace.get_current_span().set_attribute("stovepipe.outcome", what)
        return outcome

    async def _carry_out(
        self, exc: BaseException, topic: TopicSpec, delivery: Delivery
    ) -> tuple[Outcome, str]:
        """Do what :func:`decide` says; returns the outcome and its metric label."""
        on_failure, retry = self._rules.get(topic.name, (OnFailure.RETRY_THEN_DEAD_LETTER, None))
        decision = decide(exc, delivery.attempt, on_failure, retry)
        if decision.action is Action.REDELIVER:
            return Outcome.REDELIVER, "redelivered"
        if decision.action is Action.RETRY:
            headers = {**delivery.headers, **hdr.outgoing(delivery.attempt + 1, decision.reason)}
            await self._to_tier(topic, delivery.value, delivery.key, headers, decision.delay_s)
            return Outcome.SETTLED, "retried"
        if decision.action is Action.PARK:
            log.error(
                "poison dead letter parked: topic=%s partition=%d offset=%d: %s",
                delivery.topic,
                delivery.partition,
                delivery.offset,
                decision.reason,
            )
            source = topic.name.removesuffix(".dlq")
            headers = {**delivery.headers, hdr.FAILURE_REASON: decision.reason}
            await self._park(self.settings.topic(poison(source)), delivery, headers)
            return Outcome.SETTLED, "parked"
        headers = {
            **delivery.headers,
            hdr.FAILURE_REASON: decision.reason,
            hdr.SOURCE_TOPIC: delivery.topic,
        }
        await self._park(self.settings.topic(dlq(topic.name)), delivery, headers)
        return Outcome.SETTLED, "dead_lettered"

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
            hdr.SOURCE_TOPIC: headers.get(hdr.SOURCE_TOPIC, delivery.topic),
            hdr.DROPPED_VALUE_BYTES: str(len(delivery.value)),
            hdr.FAILURE_REASON: headers.get(hdr.FAILURE_REASON, "too large"),
        }
        try:
            await self.bus.publish_raw(target, b"", key=delivery.key, headers={**headers, **origin})
        except MessageSizeTooLargeError:
            await self.bus.publish_raw(target, b"", key=None, headers=origin)
