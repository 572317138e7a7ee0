"""The runtime state of a Queue (its configuration lives in stovepipe.config)."""

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
    in_flight_count: int = 0

    def evolve(self, *, now: datetime, **changes: object) -> QueueState:
        """Return a copy with ``changes`` applied and ``version + 1``."""
        return dataclasses.replace(self, version=self.version + 1, updated_at=now, **changes)  # type: ignore[arg-type]
