"""Message headers: W3C trace context, attempt number and the last failure reason."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate

ATTEMPT = "stovepipe-attempt"
FAILURE_REASON = "stovepipe-failure-reason"
MAX_REASON = 300


def outgoing(attempt: int = 1, failure_reason: str = "") -> dict[str, str]:
    """Headers for a new record: the current trace context plus attempt (and reason)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    headers[ATTEMPT] = str(attempt)
    if failure_reason:
        headers[FAILURE_REASON] = failure_reason[:MAX_REASON]
    return headers


def attempt_of(headers: Mapping[str, str]) -> int:
    try:
        return max(1, int(headers.get(ATTEMPT, "1")))
    except ValueError:
        return 1


def trace_context(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(dict(headers))
