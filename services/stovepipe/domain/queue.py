"""The runtime state of a Queue (its configuration lives in stovepipe.config).

Build slots are recorded as the set of Request ids holding one, not as a bare
counter: taking a slot a Request already holds, or releasing one it does not
hold, is then a no-op. That makes both idempotent under redelivery and lets a
crash between the queue write and the Request write be repaired by replaying
the same steps. ``in_flight_count`` is derived from the set.

``promoted_ref``/``promoted_uri`` say where the promotion ref is known to be:
written after a Promote of the bookmark succeeded, so the sweeper can tell an
idle Queue whose ref is in place (nothing to do) from one whose ref lags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class QueueState:
    """One row per Queue; changed only by CAS on ``version``."""

    name: str
    version: int
    updated_at: datetime
    last_green_uri: str | None = None
    last_green_request_id: str | None = None
    latest_request_id: str | None = None
    slot_holders: tuple[str, ...] = ()
    promoted_ref: str | None = None
    promoted_uri: str | None = None

    def promotion_lags(self, promotion_ref: str) -> bool:
        """True unless ``promotion_ref`` is known to be at (or past) the bookmark.

        ``promoted_ref``/``promoted_uri`` remember the last promotion that
        succeeded for the bookmark then current; a ref that was never promoted,
        a renamed ref or a bookmark that moved since all count as lagging.
        """
        if not self.last_green_uri:
            return False
        return (self.promoted_ref, self.promoted_uri) != (promotion_ref, self.last_green_uri)

    @property
    def in_flight_count(self) -> int:
        return len(self.slot_holders)

    def holds_slot(self, request_id: str) -> bool:
        return request_id in self.slot_holders

    def evolve(self, *, now: datetime, **changes: object) -> QueueState:
        """Return a copy with ``changes`` applied and ``version + 1``."""
        return dataclasses.replace(self, version=self.version + 1, updated_at=now, **changes)  # type: ignore[arg-type]

    def with_slot_taken(self, request_id: str, *, now: datetime) -> QueueState:
        holders = tuple(sorted({*self.slot_holders, request_id}))
        return self.evolve(now=now, slot_holders=holders)

    def with_slot_released(self, request_id: str, *, now: datetime) -> QueueState:
        holders = tuple(h for h in self.slot_holders if h != request_id)
        return self.evolve(now=now, slot_holders=holders)
