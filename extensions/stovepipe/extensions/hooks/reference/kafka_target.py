"""The ``kafka`` target: the CloudEvent produced to the subscription's topic, binary mode.

Binary mode puts the attributes in ``ce_*`` headers and the JSON data in the
value, keyed by the Queue, so one Queue's events stay in order on one
partition; any Kafka client (``kcat`` included) reads it. The topic name is
used as written (no ``kafka.topic_prefix``: it belongs to the team that reads
it) and is created on first use if it does not exist.
"""

from __future__ import annotations

import dataclasses

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from cloudevents.core.bindings import kafka as ce_kafka

from stovepipe.config.hooks import HookConfig
from stovepipe.extensions.hooks.client import DeliverResult, Outcome
from stovepipe.hooks.events import to_cloudevent
from stovepipe.messaging import KafkaSettings, ensure_topics
from stovepipe.v1 import topics_pb2


class KafkaTarget:
    """One producer for every kafka subscription of the server."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = dataclasses.replace(settings, topic_prefix="")
        self._producer: AIOKafkaProducer | None = None
        self._ready_topics: set[str] = set()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self._settings.client_kwargs(),
                acks="all",
                enable_idempotence=False,
                client_id="stovepipe-ext-hooks",
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def produce(
        self, hook: HookConfig, event: topics_pb2.HookEvent, delivery_id: str
    ) -> DeliverResult:
        assert hook.topic is not None
        message = ce_kafka.to_binary_event(
            to_cloudevent(event), key_mapper=lambda _event: event.data.queue or event.subject
        )
        headers = [(name, value) for name, value in message.headers.items()]
        headers.append(("webhook-id", delivery_id.encode()))
        key = message.key.encode() if isinstance(message.key, str) else message.key
        try:
            if hook.topic not in self._ready_topics:
                await ensure_topics(self._settings, [hook.topic])
                self._ready_topics.add(hook.topic)
            producer = await self._started()
            await producer.send_and_wait(hook.topic, message.value, key=key, headers=headers)
        except KafkaError as exc:
            return DeliverResult(Outcome.RETRY, f"Kafka: {type(exc).__name__}")
        return DeliverResult(Outcome.DELIVERED, f"produced to {hook.topic}")

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
