"""Rows to domain objects and back, and the checks that make both backends refuse the same input."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, String, Table

from stovepipe.domain import (
    Build,
    BuildStatus,
    BuildStrategy,
    FactOrigin,
    ProjectBookmark,
    QueueState,
    Request,
    RequestState,
    TargetOutcome,
    ValidationFact,
)
from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.trigger import UpstreamGreen
from stovepipe.storage.hook_deliveries import HookDelivery, HookDeliveryStatus


def check_lengths(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values``, or raise ``InvalidInput`` when a string is longer than its column.

    PostgreSQL enforces ``VARCHAR(n)`` and SQLite does not; checking here gives
    one answer on both, and a message that names the field.
    """
    for column in table.columns:
        value = values.get(column.name)
        limit = column.type.length if isinstance(column.type, String) else None
        if isinstance(value, str) and limit and len(value) > limit:
            raise InvalidInput(
                f"{table.name}.{column.name} is {len(value)} characters long; the limit is {limit}"
            )
    return values


def queue_from_row(row: RowMapping) -> QueueState:
    return QueueState(
        name=row["queue"],
        version=row["version"],
        updated_at=row["updated_at"],
        last_green_uri=row["last_green_uri"],
        last_green_request_id=row["last_green_request_id"],
        latest_request_id=row["latest_request_id"],
        slot_holders=tuple(row["slot_holders"] or ()),
        promoted_ref=row["promoted_ref"],
        promoted_uri=row["promoted_uri"],
    )


def queue_values(q: QueueState) -> dict[str, Any]:
    return {
        "queue": q.name,
        "version": q.version,
        "updated_at": q.updated_at,
        "last_green_uri": q.last_green_uri,
        "last_green_request_id": q.last_green_request_id,
        "latest_request_id": q.latest_request_id,
        "slot_holders": list(q.slot_holders),
        "in_flight_count": q.in_flight_count,
        "promoted_ref": q.promoted_ref,
        "promoted_uri": q.promoted_uri,
    }


def request_from_row(row: RowMapping) -> Request:
    return Request(
        id=row["id"],
        queue=row["queue"],
        uri=row["uri"],
        state=RequestState(row["state"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        trigger=row["trigger"],
        build_strategy=BuildStrategy(row["build_strategy"]) if row["build_strategy"] else None,
        base_uri=row["base_uri"],
        build_id=row["build_id"],
        reason=row["reason"],
        attempt=row["attempt"],
        trigger_details=tuple(sorted((row["trigger_details"] or {}).items())),
        upstream_greens=_upstream_from_json(row["upstream_greens"]),
        title=row["title"] or "",
        head_revision=row["head_revision"] or "",
    )


def _upstream_from_json(data: Any) -> tuple[UpstreamGreen, ...]:
    return tuple(UpstreamGreen.from_json(item) for item in data or ())


def _upstream_to_json(greens: tuple[UpstreamGreen, ...]) -> list[dict[str, str]]:
    return [green.as_json() for green in greens]


def request_values(r: Request) -> dict[str, Any]:
    rid = r.request_id
    if rid.queue != r.queue:
        raise InvalidInput(f"request {r.id} does not belong to queue {r.queue!r}")
    return {
        "queue": r.queue,
        "n": rid.n,
        "id": r.id,
        "uri": r.uri,
        "state": r.state.value,
        "version": r.version,
        "trigger": r.trigger,
        "build_strategy": r.build_strategy.value if r.build_strategy else None,
        "base_uri": r.base_uri,
        "build_id": r.build_id,
        "reason": r.reason,
        "attempt": r.attempt,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "trigger_details": dict(r.trigger_details),
        "upstream_greens": _upstream_to_json(r.upstream_greens),
        "title": r.title,
        "head_revision": r.head_revision,
    }


def build_from_row(row: RowMapping) -> Build:
    return Build(
        queue=row["queue"],
        build_id=row["build_id"],
        request_id=row["request_id"],
        project=row["project"],
        status=BuildStatus(row["status"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        targets=tuple(
            TargetOutcome(
                name=t["name"],
                state=t["state"],
                exit_code=t.get("exit_code", 0),
                duration_seconds=t.get("duration_seconds", 0.0),
                paths=tuple(t.get("paths", ())),
            )
            for t in row["targets"] or ()
        ),
        message=row["message"],
    )


def build_values(b: Build) -> dict[str, Any]:
    return {
        "queue": b.queue,
        "build_id": b.build_id,
        "request_id": b.request_id,
        "project": b.project,
        "status": b.status.value,
        "version": b.version,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
        "targets": [
            {
                "name": t.name,
                "state": t.state,
                "exit_code": t.exit_code,
                "duration_seconds": t.duration_seconds,
                "paths": list(t.paths),
            }
            for t in b.targets
        ],
        "message": b.message,
    }


def fact_from_row(row: RowMapping) -> ValidationFact:
    return ValidationFact(
        queue=row["queue"],
        uri=row["uri"],
        project=row["project"],
        degree=row["degree"],
        request_id=row["request_id"],
        origin=FactOrigin(row["origin"]),
        created_at=row["created_at"],
        reason=row["reason"],
        attempt=row["attempt"],
        upstream_greens=_upstream_from_json(row["upstream_greens"]),
        inherited_from_uri=row["inherited_from_uri"] or "",
    )


def fact_values(f: ValidationFact) -> dict[str, Any]:
    return {
        "queue": f.queue,
        "uri": f.uri,
        "project": f.project,
        "degree": float(f.degree),
        "request_id": f.request_id,
        "origin": f.origin.value,
        "created_at": f.created_at,
        "reason": f.reason,
        "attempt": f.attempt,
        "upstream_greens": _upstream_to_json(f.upstream_greens),
        "inherited_from_uri": f.inherited_from_uri,
    }


def project_bookmark_from_row(row: RowMapping) -> ProjectBookmark:
    return ProjectBookmark(
        queue=row["queue"],
        project=row["project"],
        version=row["version"],
        updated_at=row["updated_at"],
        last_green_uri=row["last_green_uri"],
        last_green_request_id=row["last_green_request_id"],
        promoted_uri=row["promoted_uri"],
    )


def project_bookmark_values(b: ProjectBookmark) -> dict[str, Any]:
    return {
        "queue": b.queue,
        "project": b.project,
        "version": b.version,
        "updated_at": b.updated_at,
        "last_green_uri": b.last_green_uri,
        "last_green_request_id": b.last_green_request_id,
        "promoted_uri": b.promoted_uri,
    }


def hook_delivery_from_row(row: RowMapping) -> HookDelivery:
    return HookDelivery(
        queue=row["queue"],
        event_id=row["event_id"],
        hook=row["hook"],
        status=HookDeliveryStatus(row["status"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        event_type=row["event_type"],
        event=bytes(row["event"] or b""),
        position=row["position"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
    )


def hook_delivery_values(d: HookDelivery) -> dict[str, Any]:
    return {
        "queue": d.queue,
        "event_id": d.event_id,
        "hook": d.hook,
        "status": d.status.value,
        "version": d.version,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "event_type": d.event_type,
        "event": d.event,
        "position": d.position,
        "next_attempt_at": d.next_attempt_at,
        "delivered_at": d.delivered_at,
    }
