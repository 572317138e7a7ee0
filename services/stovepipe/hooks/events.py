"""The events downstream teams subscribe to, built from recorded facts.

Every verdict gives ``dev.stovepipe.verdict.recorded``; a verdict whose green-ness
differs from the Queue's previous recorded verdict (in ingest order, not in
recording order) also gives ``dev.stovepipe.queue.became_green`` or
``became_broken``. A Queue's first verdict is a transition from "unknown".

An event's ``id`` is a digest of ``(queue, commit, attempt, type, project)``, so
the record stage re-emitting it (redelivery, the sweeper's re-record) produces
the same id and receivers can deduplicate on it. What leaves Stovepipe is a
CloudEvents 1.0 envelope built with the ``cloudevents`` library
(:func:`to_cloudevent`); the wire forms (JSON structured over HTTP, binary on
Kafka) are the reference hooks server's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from google.protobuf.timestamp_pb2 import Timestamp

from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.redaction import redact_line
from stovepipe.v1 import topics_pb2, types_pb2

VERDICT_RECORDED = "dev.stovepipe.verdict.recorded"
BECAME_GREEN = "dev.stovepipe.queue.became_green"
BECAME_BROKEN = "dev.stovepipe.queue.became_broken"
VERDICT_TYPES = (VERDICT_RECORDED, BECAME_GREEN, BECAME_BROKEN)
TRANSITION_TYPES = (BECAME_GREEN, BECAME_BROKEN)

MAX_REASON = 1000
"""Reasons are summaries; a build's output never travels in an event."""

_ORIGINS = {
    FactOrigin.BUILD: types_pb2.FACT_ORIGIN_BUILD,
    FactOrigin.FAIL_CLOSED: types_pb2.FACT_ORIGIN_FAIL_CLOSED,
    FactOrigin.INHERITED: types_pb2.FACT_ORIGIN_INHERITED,
}
_ORIGIN_NAMES = {
    types_pb2.FACT_ORIGIN_BUILD: "build",
    types_pb2.FACT_ORIGIN_FAIL_CLOSED: "fail_closed",
    types_pb2.FACT_ORIGIN_INHERITED: "inherited",
}


def event_id(queue: str, uri: str, attempt: int, event_type: str, project: str) -> str:
    """Stable per ``(queue, commit, attempt, type, project)``: redelivery keeps it."""
    key = "\0".join((queue, uri, str(max(attempt, 1)), event_type, project))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def source(queue: str) -> str:
    return f"/stovepipe/queues/{queue}"


def origin_pb(origin: FactOrigin) -> types_pb2.FactOrigin.ValueType:
    return _ORIGINS[origin]


def verdict_events(
    fact: ValidationFact,
    previous: ValidationFact | None,
    *,
    took_bookmark: bool,
    last_green_uri: str,
    strategy: str,
    build_link: str,
    now: datetime,
) -> list[topics_pb2.HookEvent]:
    """``verdict.recorded`` for ``fact``, then the transition it makes from ``previous``, if any."""
    when = Timestamp()
    when.FromDatetime(now)
    reason = redact_line(fact.reason, MAX_REASON)
    data = topics_pb2.GreennessEventData(
        queue=fact.queue,
        uri=fact.uri,
        project=fact.project,
        degree=fact.degree,
        origin=origin_pb(fact.origin),
        request_id=fact.request_id,
        green=fact.green,
        took_bookmark=took_bookmark,
        reason=reason,
        attempt=fact.attempt,
        inherited_from_uri=fact.inherited_from_uri,
        has_previous=previous is not None,
        previous_degree=previous.degree if previous is not None else 0.0,
        previous_uri=previous.uri if previous is not None else "",
        last_green_uri=last_green_uri,
        strategy=strategy,
        build_link=build_link,
        dead_letter_reason=reason if fact.origin is FactOrigin.FAIL_CLOSED else "",
    )
    types = [VERDICT_RECORDED]
    if previous is None or previous.green != fact.green:
        types.append(BECAME_GREEN if fact.green else BECAME_BROKEN)
    return [
        topics_pb2.HookEvent(
            id=event_id(fact.queue, fact.uri, fact.attempt, kind, fact.project),
            source=source(fact.queue),
            type=kind,
            spec_version="1.0",
            time=when,
            subject=fact.queue,
            data=data,
        )
        for kind in types
    ]


def data_of(event: topics_pb2.HookEvent) -> dict[str, Any]:
    """The event's ``data`` as the JSON object receivers get."""
    d = event.data
    previous: dict[str, Any] | None = None
    if d.has_previous:
        previous = {"degree": d.previous_degree, "commit": d.previous_uri}
    out: dict[str, Any] = {
        "queue": d.queue,
        "commit": d.uri,
        "degree": d.degree,
        "green": d.green,
        "origin": _ORIGIN_NAMES.get(d.origin, "unspecified"),
        "attempt": d.attempt,
        "request_id": d.request_id,
        "previous": previous,
        "last_green": d.last_green_uri or None,
        "took_bookmark": d.took_bookmark,
        "strategy": d.strategy or None,
        "build_link": d.build_link or None,
        "reason": d.reason,
    }
    if d.project:
        out["project"] = d.project
    if d.dead_letter_reason:
        out["dead_letter_reason"] = d.dead_letter_reason
    return out


def to_cloudevent(event: topics_pb2.HookEvent) -> CloudEvent:
    """The CloudEvents 1.0 envelope of ``event`` (``datacontenttype`` JSON)."""
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": "1.0",
        "subject": event.subject,
        "datacontenttype": "application/json",
        "time": event.time.ToDatetime(tzinfo=UTC),
    }
    return CloudEvent(attributes=attributes, data=data_of(event))


def position(event: topics_pb2.HookEvent) -> int:
    """Where ``event`` sits in its Queue's event order: time, then the order of emission."""
    rank = {VERDICT_RECORDED: 0, BECAME_GREEN: 1, BECAME_BROKEN: 1}.get(event.type, 2)
    micros = event.time.seconds * 1_000_000 + event.time.nanos // 1000
    return micros * 8 + rank


def matches_types(events: str, event_type: str, green: bool) -> bool:
    """Whether a subscription's ``events:`` setting wants an event of this type."""
    if events == "all":
        return True
    if events == "transitions":
        return event_type in TRANSITION_TYPES
    if event_type != VERDICT_RECORDED:
        return False
    return green if events == "green" else not green


__all__: Sequence[str] = (
    "BECAME_BROKEN",
    "BECAME_GREEN",
    "VERDICT_RECORDED",
    "data_of",
    "event_id",
    "matches_types",
    "position",
    "to_cloudevent",
    "verdict_events",
)
