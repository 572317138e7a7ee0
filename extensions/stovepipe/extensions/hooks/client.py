"""The core's side of HooksService: one call per delivery attempt, an outcome back.

A transport failure (the hooks server down, a deadline) is an outcome too
(``RETRY``): the dispatcher never tells apart "the server is down" from "the
target is down", both are retried with backoff.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc

from stovepipe.ext.v1 import hooks_pb2, hooks_pb2_grpc
from stovepipe.redaction import redact_line
from stovepipe.v1 import topics_pb2


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"


_OUTCOMES = {
    hooks_pb2.DELIVER_OUTCOME_DELIVERED: Outcome.DELIVERED,
    hooks_pb2.DELIVER_OUTCOME_RETRY: Outcome.RETRY,
    hooks_pb2.DELIVER_OUTCOME_FAILED: Outcome.FAILED,
    hooks_pb2.DELIVER_OUTCOME_GONE: Outcome.GONE,
}
OUTCOMES_PB = {v: k for k, v in _OUTCOMES.items()}

_PERMANENT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass(frozen=True)
class DeliverResult:
    outcome: Outcome
    detail: str = ""
    retry_after_s: float = 0.0


class HooksClient:
    """Typed client of one HooksService server."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = hooks_pb2_grpc.HooksServiceStub(channel)

    async def deliver(
        self,
        event: topics_pb2.HookEvent,
        *,
        queue: str,
        hook: str,
        delivery_id: str,
        timeout_s: float,
    ) -> DeliverResult:
        """One attempt; never raises for what the server or the network did."""
        try:
            response: hooks_pb2.DeliverResponse = await self._stub.Deliver(
                hooks_pb2.DeliverRequest(
                    event=event, hook=hook, queue=queue, delivery_id=delivery_id
                ),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            detail = redact_line(f"hooks server: {exc.code().name}: {exc.details() or ''}", 300)
            if exc.code() in _PERMANENT:
                return DeliverResult(Outcome.FAILED, detail)
            return DeliverResult(Outcome.RETRY, detail)
        outcome = _OUTCOMES.get(response.outcome, Outcome.RETRY)
        return DeliverResult(
            outcome, redact_line(response.detail, 300), max(0.0, response.retry_after_seconds)
        )
