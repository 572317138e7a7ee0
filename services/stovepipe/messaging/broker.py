"""The FastStream ``KafkaBroker`` every publisher and consumer of a process shares."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker

from stovepipe.messaging.settings import KafkaSettings

HEADROOM_BYTES = 64 * 1024
"""Room for headers and record framing on top of the payload limit."""


def transport_limit(settings: KafkaSettings) -> int:
    """The request / fetch size that always fits one payload at the limit plus its headers."""
    return max(1024 * 1024, settings.max_message_bytes + HEADROOM_BYTES)


def kafka_broker(settings: KafkaSettings) -> KafkaBroker:
    """A broker whose producer waits for every replica and is never idempotent.

    Idempotent producers are off because Tansu refuses them (and handlers are
    idempotent anyway). FastStream's per-message access log is moved to DEBUG:
    at INFO it would log twice per record.
    """
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=settings.client_id,
        enable_idempotence=False,
        acks="all",
        request_timeout_ms=settings.request_timeout_ms,
        max_request_size=transport_limit(settings),
        graceful_timeout=settings.graceful_timeout_s,
        log_level=logging.DEBUG,
    )
