"""Hook deliveries: whether one HookEvent has reached one configured hook.

The dispatcher creates the row before its first attempt (create-only, so a
redelivered event finds the row and does not deliver twice once it is
``delivered``) and records each attempt with a CAS on ``version``.
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
    """``(queue, event_id, hook) -> status``; changed only by CAS on ``version``."""

    queue: str
    event_id: str
    hook: str
    status: HookDeliveryStatus
    version: int
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    last_error: str = ""

    def with_attempt(
        self, status: HookDeliveryStatus, *, now: datetime, error: str = ""
    ) -> HookDelivery:
        """The row after one more attempt that ended in ``status`` (``version + 1``)."""
        return dataclasses.replace(
            self,
            status=status,
            attempts=self.attempts + 1,
            last_error=error,
            version=self.version + 1,
            updated_at=now,
        )
