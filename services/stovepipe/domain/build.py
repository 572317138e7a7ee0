"""Builds: one build-runner run, identified by the id the runner minted."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class BuildStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ERRORED = "errored"

    @property
    def terminal(self) -> bool:
        return self in {
            BuildStatus.SUCCEEDED,
            BuildStatus.FAILED,
            BuildStatus.CANCELLED,
            BuildStatus.ERRORED,
        }


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    """One node of a build's target graph."""

    name: str
    state: str
    exit_code: int = 0
    duration_seconds: float = 0.0
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Build:
    queue: str
    build_id: str
    request_id: str
    project: str
    status: BuildStatus
    version: int
    created_at: datetime
    updated_at: datetime
    targets: tuple[TargetOutcome, ...] = field(default_factory=tuple)
    message: str = ""
