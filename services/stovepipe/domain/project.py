"""Per-project runtime state: the last-green bookmark of one project of a Queue."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ProjectBookmark:
    """``(queue, project) -> last green``; changed only by CAS on ``version``.

    Like the Queue's bookmark it moves forward only, by ingest order of the
    Request that wrote the green fact, and only once that fact is durable.
    ``promoted_uri`` remembers where the project's promotion ref was last put.
    """

    queue: str
    project: str
    version: int
    updated_at: datetime
    last_green_uri: str | None = None
    last_green_request_id: str | None = None
    promoted_uri: str | None = None

    def evolve(self, *, now: datetime, **changes: Any) -> ProjectBookmark:
        """The next version of this row with ``changes`` applied."""
        return dataclasses.replace(self, version=self.version + 1, updated_at=now, **changes)
