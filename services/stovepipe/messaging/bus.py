"""One process's messaging: a FastStream broker with its publisher and consumer wiring.

:class:`Bus` owns the broker's lifecycle (start, bounded stop) and exposes the
:class:`Publisher` and :class:`Consumer` that share it. ``Bus.subscribe`` is the
shape stages want (a handler that takes only the payload; the record is in
:data:`current_delivery`); ``bus.consumer.subscribe`` gives the handler the
:class:`Delivery` as a second argument.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from faststream.kafka import KafkaBroker
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.messaging.broker import kafka_broker
from stovepipe.messaging.consumer import Consumer, Subscription
from stovepipe.messaging.delivery import Delivery
from stovepipe.messaging.failure import FailurePolicy, redeliver
from stovepipe.messaging.publisher import Published, Publisher
from stovepipe.messaging.settings import KafkaSettings

log = logging.getLogger(__name__)

PayloadHandler = Callable[[Any], Awaitable[None]]
"""A stage handler: takes the decoded payload only."""


class Bus:
    """Publisher and subscriptions on one ``KafkaBroker``; an async context manager.

    For the in-memory test broker, enter ``TestKafkaBroker(bus.broker)`` instead
    of calling :meth:`start`; the same subscriptions and publishes then run
    without a cluster (handlers run inside ``publish``).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        failure_policy: FailurePolicy = redeliver,
        broker: KafkaBroker | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker if broker is not None else kafka_broker(settings)
        self.publisher = Publisher(self.broker, settings, tracer_provider=tracer_provider)
        self.consumer = Consumer(
            self.broker, settings, failure_policy=failure_policy, tracer_provider=tracer_provider
        )
        self._started = False

    @property
    def failure_policy(self) -> FailurePolicy:
        return self.consumer.failure_policy

    @failure_policy.setter
    def failure_policy(self, policy: FailurePolicy) -> None:
        self.consumer.failure_policy = policy

    async def start(self) -> None:
        """Connect and start every subscription registered so far (one group join each)."""
        self._started = True
        try:
            await self.broker.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Drain in-flight handlers for up to ``graceful_timeout_s``, then close; never hangs.

        A handler still running after the grace period is cancelled and its
        record is not committed (it is delivered again later). If the clients
        cannot close within ``close_timeout_s`` (say every broker is gone), the
        stop gives up on them rather than block shutdown.
        """
        if not self._started:
            return
        self._started = False
        try:
            await asyncio.wait_for(self.consumer.drain(), self.settings.stop_timeout_s)
        except TimeoutError:
            log.warning("in-flight records did not settle; they are delivered again")
        self.consumer.close()
        try:
            await asyncio.wait_for(self.broker.stop(), self.settings.stop_timeout_s)
        except TimeoutError:
            log.warning(
                "messaging did not stop within %.1fs; abandoning its clients",
                self.settings.stop_timeout_s,
            )

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def publish(
        self,
        topic: str,
        message: Message,
        *,
        key: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        attempt: int = 1,
        failure_reason: str | None = None,
    ) -> Published:
        """See :meth:`Publisher.publish`."""
        return await self.publisher.publish(
            topic,
            message,
            key=key,
            headers=headers,
            attempt=attempt,
            failure_reason=failure_reason,
        )

    async def publish_raw(
        self, topic: str, data: bytes, *, key: bytes | None, headers: Mapping[str, str]
    ) -> Published:
        """See :meth:`Publisher.publish_raw` (``topic`` is physical)."""
        return await self.publisher.publish_raw(topic, data, key=key, headers=headers)

    def subscribe(self, topic: str, handler: PayloadHandler, *, group: str) -> Subscription:
        """Subscribe a payload-only handler; see :meth:`Consumer.subscribe`."""

        async def with_payload_only(payload: Any, _delivery: Delivery) -> None:
            await handler(payload)

        return self.consumer.subscribe(topic, with_payload_only, group=group)
