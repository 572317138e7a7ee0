"""The FastStream ``KafkaBroker`` every publisher and consumer of a process shares."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from stovepipe.messaging.settings import KafkaSettings

HEADROOM_BYTES = 64 * 1024
"""Room for headers and record framing on top of the payload limit."""

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


FASTSTREAM_LOGGER = "stovepipe.faststream"


def transport_limit(settings: KafkaSettings) -> int:
    """The request / fetch size that always fits one payload at the limit plus its headers."""
    return max(1024 * 1024, settings.max_message_bytes + HEADROOM_BYTES)


def faststream_security(client_kwargs: Mapping[str, Any]) -> BaseSecurity | None:
    """:meth:`KafkaSettings.client_kwargs` in FastStream's terms.

    FastStream takes security only as a ``security=`` object and turns it back
    into exactly these aiokafka arguments, so its clients connect like ours.
    """
    protocol = client_kwargs["security_protocol"]
    context = client_kwargs.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    login = _SASL[client_kwargs["sasl_mechanism"]]
    return login(
        client_kwargs["sasl_plain_username"],
        client_kwargs["sasl_plain_password"],
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def kafka_broker(settings: KafkaSettings) -> KafkaBroker:
    """A broker whose producer waits for every replica and is never idempotent.

    Idempotent producers are off because Tansu refuses them (and handlers are
    idempotent anyway). FastStream's per-message access log is moved to DEBUG:
    at INFO it would log twice per record. Its dependency injection is off: our
    one handler per subscription takes the message as it is
    (:mod:`.consumer`), and resolving its signature on every record was a
    measurable share of a worker's CPU.
    """
    connection = settings.client_kwargs()
    return KafkaBroker(
        connection["bootstrap_servers"],
        security=faststream_security(connection),
        client_id=settings.client_id,
        enable_idempotence=False,
        acks="all",
        request_timeout_ms=settings.request_timeout_ms,
        max_request_size=transport_limit(settings),
        graceful_timeout=settings.graceful_timeout_s,
        apply_types=False,
        log_level=logging.DEBUG,
        # our logger, not FastStream's own (which writes coloured text straight to
        # stdout), so its lines are formatted, redacted and levelled like ours
        logger=logging.getLogger(FASTSTREAM_LOGGER),
    )
