"""Domain objects to their protobuf form (the API's wire types)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from stovepipe.domain import (
    BuildStrategy,
    FactOrigin,
    Request,
    RequestState,
    UpstreamGreen,
    ValidationFact,
)
from stovepipe.storage.hook_deliveries import HookDelivery
from stovepipe.v1 import stovepipe_service_pb2, types_pb2

_STATES = {
    RequestState.ACCEPTED: types_pb2.REQUEST_STATE_ACCEPTED,
    RequestState.PROCESSING: types_pb2.REQUEST_STATE_PROCESSING,
    RequestState.ANALYZING: types_pb2.REQUEST_STATE_ANALYZING,
    RequestState.SUPERSEDED: types_pb2.REQUEST_STATE_SUPERSEDED,
    RequestState.SUCCEEDED: types_pb2.REQUEST_STATE_SUCCEEDED,
    RequestState.FAILED: types_pb2.REQUEST_STATE_FAILED,
    RequestState.CANCELLED: types_pb2.REQUEST_STATE_CANCELLED,
}
_STATES_BACK = {v: k for k, v in _STATES.items()}
_STRATEGIES = {
    BuildStrategy.FULL: types_pb2.BUILD_STRATEGY_FULL,
    BuildStrategy.INCREMENTAL: types_pb2.BUILD_STRATEGY_INCREMENTAL,
}
_STRATEGIES_BACK = {v: k for k, v in _STRATEGIES.items()}
_ORIGINS = {
    FactOrigin.BUILD: types_pb2.FACT_ORIGIN_BUILD,
    FactOrigin.FAIL_CLOSED: types_pb2.FACT_ORIGIN_FAIL_CLOSED,
    FactOrigin.INHERITED: types_pb2.FACT_ORIGIN_INHERITED,
}
_ORIGINS_BACK = {v: k for k, v in _ORIGINS.items()}


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def state_to_pb(state: RequestState) -> types_pb2.RequestState.ValueType:
    return _STATES[state]


def request_to_pb(request: Request) -> types_pb2.Request:
    return types_pb2.Request(
        id=request.id,
        queue=request.queue,
        uri=request.uri,
        state=_STATES[request.state],
        build_strategy=(
            _STRATEGIES[request.build_strategy]
            if request.build_strategy
            else types_pb2.BUILD_STRATEGY_UNSPECIFIED
        ),
        base_uri=request.base_uri or "",
        build_id=request.build_id or "",
        reason=request.reason,
        trigger=request.trigger,
        version=request.version,
        created_at=timestamp(request.created_at),
        updated_at=timestamp(request.updated_at),
        attempt=request.attempt,
        trigger_details=dict(request.trigger_details),
        upstream_greens=upstream_to_pb(request.upstream_greens),
        title=request.title,
    )


def upstream_to_pb(greens: Iterable[UpstreamGreen]) -> list[types_pb2.UpstreamGreen]:
    return [
        types_pb2.UpstreamGreen(queue=g.queue, uri=g.uri, request_id=g.request_id) for g in greens
    ]


def fact_to_pb(fact: ValidationFact) -> types_pb2.ValidationFact:
    return types_pb2.ValidationFact(
        queue=fact.queue,
        uri=fact.uri,
        project=fact.project,
        degree=fact.degree,
        request_id=fact.request_id,
        created_at=timestamp(fact.created_at),
        origin=_ORIGINS[fact.origin],
        reason=fact.reason,
        attempt=fact.attempt,
        upstream_greens=upstream_to_pb(fact.upstream_greens),
        inherited_from_uri=fact.inherited_from_uri,
    )


def state_from_pb(value: int) -> RequestState:
    return _STATES_BACK[value]  # type: ignore[index]


def strategy_from_pb(value: int) -> BuildStrategy | None:
    return _STRATEGIES_BACK.get(value)  # type: ignore[call-overload, no-any-return]


def origin_from_pb(value: int) -> FactOrigin:
    return _ORIGINS_BACK[value]  # type: ignore[index]


def hook_delivery_to_pb(
    delivery: HookDelivery, *, with_event: bool = False
) -> stovepipe_service_pb2.HookDelivery:
    """The delivery as operators see it; its event only when asked (it is the big part)."""
    out = stovepipe_service_pb2.HookDelivery(
        id=delivery.id,
        queue=delivery.queue,
        event_id=delivery.event_id,
        hook=delivery.hook,
        state=delivery.status.value,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        event_type=delivery.event_type,
        created_at=timestamp(delivery.created_at),
        updated_at=timestamp(delivery.updated_at),
    )
    if delivery.delivered_at is not None:
        out.delivered_at.CopyFrom(timestamp(delivery.delivered_at))
    if delivery.next_attempt_at is not None and not delivery.status.terminal:
        out.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
    if with_event and delivery.event:
        out.event.ParseFromString(delivery.event)
    return out
