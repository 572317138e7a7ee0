"""Hook deliveries: whether one event has reached one subscription of its Queue.

The dispatcher creates the row when it reads the event (create-only, so a
redelivered event finds the row and never makes a second one), claims each
attempt and then records its outcome, both with a CAS on ``version`` (the
claim is what lets several dispatcher replicas share the rows). The row holds the event itself, so
retries and an operator's redelivery send the same bytes and the same id,
whatever happened to the topic since.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime


class HookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self is not HookDeliveryStatus.PENDING


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """``(queue, event_id, hook) -> status``; changed only by CAS on ``version``.

    ``position`` orders one subscription's deliveries (event order);
    ``next_attempt_at`` is when the next attempt is due (``None``: at once)."""

    queue: str
    event_id: str
    hook: str
    status: HookDeliveryStatus
    version: int
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    last_error: str = ""
    event_type: str = ""
    event: bytes = b""
    position: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None

    @property
    def id(self) -> str:
        """``<queue>/<event id>/<hook>``: how operators name a delivery."""
        return f"{self.queue}/{self.event_id}/{self.hook}"

    def with_attempt(
        self,
        status: HookDeliveryStatus,
        *,
        now: datetime,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> HookDelivery:
        """The row after one more attempt that ended in ``status`` (``version + 1``)."""
        return dataclasses.replace(
            self,
            status=status,
            attempts=self.attempts + 1,
            last_error=error,
            version=self.version + 1,
            updated_at=now,
            next_attempt_at=next_attempt_at,
            delivered_at=now if status is HookDeliveryStatus.DELIVERED else self.delivered_at,
        )

    def claimed(self, *, now: datetime, until: datetime) -> HookDelivery:
        """The row taken for one attempt (``version + 1``): ``next_attempt_at`` becomes the
        end of the claim, so no other dispatcher sends it before then, and a dispatcher
        that dies mid-attempt leaves it due again at that time."""
        return dataclasses.replace(self, version=self.version + 1, updated_at=now,
                                   next_attempt_at=until)  # fmt: skip

    def settled(self, status: HookDeliveryStatus, *, now: datetime, error: str) -> HookDelivery:
        """The row ended without an attempt (its subscription is gone or disabled)."""
        return dataclasses.replace(
            self, status=status, last_error=error, version=self.version + 1, updated_at=now
        )

    def requeued(self, *, now: datetime) -> HookDelivery:
        """Back in line for a fresh round of attempts (an operator's redelivery)."""
        return dataclasses.replace(
            self,
            status=HookDeliveryStatus.PENDING,
            attempts=0,
            version=self.version + 1,
            updated_at=now,
            next_attempt_at=None,
        )


def parse_delivery_id(text: str) -> tuple[str, str, str]:
    """``(queue, event_id, hook)`` from ``<queue>/<event id>/<hook>``; ``ValueError`` otherwise.

    Queue names contain ``/``; event ids and hook names do not."""
    queue, sep, rest = text.rpartition("/")
    queue2, sep2, event_id = queue.rpartition("/")
    if not sep or not sep2 or not queue2 or not event_id or not rest:
        raise ValueError(f"delivery id {text[:300]!r} is not <queue>/<event id>/<hook>")
    return queue2, event_id, rest
