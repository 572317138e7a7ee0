"""What every repair is given and what it promises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SweepPass:
    """One sweep: its clock reading and its bounds, shared by every repair.

    Anything unchanged since ``cutoff`` (``now - stale_after``) has stood still
    long enough that its own messages would have moved it by now.
    """

    now: datetime
    stale_after: timedelta
    limit: int
    lookback: timedelta

    @property
    def cutoff(self) -> datetime:
        return self.now - self.stale_after


class Repair(Protocol):
    """Mends one kind of lost work; safe to run by several sweeper replicas at once."""

    async def repair(self, sweep: SweepPass) -> list[str]:
        """One pass; the ids of the Requests it acted on."""
        ...
