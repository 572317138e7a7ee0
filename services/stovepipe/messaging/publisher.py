"""Publish a payload to a logical topic and wait until the broker has it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.messaging import headers as hdr
from stovepipe.messaging.codec import MalformedMessage, encode, payload_type_name
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import spec


@dataclass(frozen=True)
class Published:
    """Where a record landed. ``partition``/``offset`` are ``None`` on the in-memory test broker."""

    topic: str
    key: bytes
    partition: int | None
    offset: int | None


class Publisher:
    """Validates, keys, labels and produces payloads on a shared FastStream broker."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: KafkaSettings,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

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
        """Produce ``message`` to the logical ``topic`` and await the broker's ack.

        Raises :class:`MalformedMessage` before producing anything when the
        message is not the topic's type, lacks its ids, is too big, or yields an
        empty key. ``key`` overrides the topic's key rule; ``headers`` are added
        to (and never replace) the trace context, attempt and payload type.
        """
        binding = spec(topic)
        data = encode(binding, message, self._settings.max_message_bytes)
        raw_key = key if key is not None else binding.key(message)
        key_bytes = raw_key.encode() if isinstance(raw_key, str) else raw_key
        if not key_bytes:
            raise MalformedMessage(f"{topic}: the partition key of this message is empty")
        physical = self._settings.topic(topic)
        with self._tracer.start_as_current_span(
            f"publish {topic}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": physical,
                "messaging.kafka.message.key": key_bytes.decode("utf-8", "replace"),
                "stovepipe.attempt": attempt,
            },
        ) as span:
            outgoing = {
                **(headers or {}),
                **hdr.outgoing(
                    attempt, failure_reason, payload_type=payload_type_name(binding.payload)
                ),
            }
            published = await self.publish_raw(physical, data, key=key_bytes, headers=outgoing)
            if published.partition is not None:
                span.set_attribute("messaging.destination.partition.id", str(published.partition))
            return published

    async def publish_raw(
        self, topic: str, data: bytes, *, key: bytes | None, headers: Mapping[str, str]
    ) -> Published:
        """Produce bytes as they are to a *physical* topic; for forwarding existing records."""
        metadata: Any = await self._broker.publish(
            data, topic=topic, key=key, headers=dict(headers)
        )
        return Published(
            topic=topic,
            key=key or b"",
            partition=getattr(metadata, "partition", None),
            offset=getattr(metadata, "offset", None),
        )
