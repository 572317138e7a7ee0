"""Record headers: trace context, attempt number, failure reason, payload type, delay routing.

Trace context travels as W3C ``traceparent``/``tracestate`` through whatever
propagator OpenTelemetry is configured with (the default is W3C trace context
plus baggage), so a consumer's span continues the producer's trace. Header
values are text; anything that is not UTF-8 is replaced rather than rejected,
since a header is never worth losing a record over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate

from stovepipe.redaction import redact_line

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
ATTEMPT = "stovepipe-attempt"
"""Delivery attempt of the payload, ``1`` for a fresh publish, ``n + 1`` for a retry of ``n``."""
FAILURE_REASON = "stovepipe-failure-reason"
"""Why the previous attempt failed: one line, redacted, at most ``MAX_REASON`` characters."""
PAYLOAD_TYPE = "stovepipe-payload-type"
"""The fully qualified protobuf type of the value, checked on decode."""
TARGET_TOPIC = "stovepipe-target-topic"
"""For delay tiers: the physical topic a delayed record goes to when due."""
NOT_BEFORE = "stovepipe-not-before"
"""For delay tiers: epoch milliseconds before which the record must not be delivered."""
SOURCE_TOPIC = "stovepipe-source-topic"
"""On a dead letter: the physical topic the record failed on."""
DROPPED_VALUE_BYTES = "stovepipe-dropped-value-bytes"
"""On a parked record too large to produce again: the size of the value left out."""

MAX_REASON = 300


def failure_reason(reason: str | BaseException) -> str:
    """A failure as one short, redacted line fit for a header, a log or an event."""
    text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
    return redact_line(text, MAX_REASON)


def inject_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context to ``headers`` (in place) and return them."""
    propagate.inject(headers)
    return headers


def trace_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The producer's trace context, to parent the consumer's span."""
    return propagate.extract(dict(headers))


def outgoing(
    attempt: int = 1,
    failure_reason_text: str | None = None,
    *,
    payload_type: str | None = None,
) -> dict[str, str]:
    """Headers for a record produced now: current trace context, attempt, optional reason."""
    if attempt < 1:
        raise ValueError(f"attempt starts at 1, not {attempt}")
    headers = inject_trace_context({})
    headers[ATTEMPT] = str(attempt)
    if failure_reason_text:
        headers[FAILURE_REASON] = failure_reason(failure_reason_text)
    if payload_type:
        headers[PAYLOAD_TYPE] = payload_type
    return headers


def attempt_of(headers: Mapping[str, str]) -> int:
    """The attempt a record is on; ``1`` when the header is absent or unreadable."""
    try:
        return max(1, int(headers.get(ATTEMPT, "1")))
    except ValueError:
        return 1


def from_record(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka's ``(name, bytes)`` pairs as text; a repeated name keeps its last value."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in raw or ()}
