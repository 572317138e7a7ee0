"""The one wrapper every stage handler runs in: span attributes, log context, metrics.

Stages stay free of telemetry code. Every stage message names its Request
(``request_id``, ``queue``, ``request_attempt``), so what identifies the work
is read from the payload itself, by field name, whatever the message type.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from google.protobuf.message import Message
from opentelemetry import trace

from stovepipe.messaging import Delivery, DeliveryHandler
from stovepipe.telemetry.metrics import STAGE_HANDLER_SECONDS, STAGE_RECORDS

_FIELDS = (
    ("request_id", "stovepipe.request.id"),
    ("queue", "stovepipe.queue"),
    ("request_attempt", "stovepipe.request.attempt"),
    ("build_id", "stovepipe.build.id"),
    ("uri", "stovepipe.commit"),
)


def request_fields(payload: Any) -> dict[str, str | int]:
    """The identifying fields ``payload`` has and sets, keyed by their span attribute."""
    found: dict[str, str | int] = {}
    if not isinstance(payload, Message):
        return found
    names = payload.DESCRIPTOR.fields_by_name
    for field, attribute in _FIELDS:
        if field in names and (value := getattr(payload, field)):
            found[attribute] = value
    if "scope" in names and payload.HasField("scope"):
        project: str = getattr(payload, "scope").project  # noqa: B009 - any message type
        if project:
            found["stovepipe.project"] = project
    return found


def instrumented(topic: str, stage: str, handler: DeliveryHandler) -> DeliveryHandler:
    """``handler`` with the current (consumer) span annotated, the log context bound
    to the Request and the stage, and its outcome and duration counted."""

    async def handle(payload: Any, delivery: Delivery) -> None:
        span = trace.get_current_span()
        fields = request_fields(payload)
        span.set_attributes({**fields, "stovepipe.stage": stage})
        context = span.get_span_context()
        bound = {
            "stage": stage,
            "attempt": delivery.attempt,
            **{key.removeprefix("stovepipe.").replace(".", "_"): v for key, v in fields.items()},
        }
        if context.is_valid:
            bound["trace_id"] = format(context.trace_id, "032x")
        tokens = structlog.contextvars.bind_contextvars(**bound)
        start = time.perf_counter()
        outcome = "failed"
        try:
            await handler(payload, delivery)
            outcome = "handled"
        finally:
            STAGE_HANDLER_SECONDS.labels(stage, topic).observe(time.perf_counter() - start)
            STAGE_RECORDS.labels(stage, topic, outcome).inc()
            span.set_attribute("stovepipe.outcome", outcome)
            structlog.contextvars.reset_contextvars(**tokens)

    return handle
