"""What a ProjectMapper is asked and answers, independent of protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProjectVerdict(enum.StrEnum):
    """What a build's target graph says about one project."""

    GREEN = "green"
    BROKEN = "broken"
    NOT_YET_KNOWN = "not_yet_known"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectSpec:
    """One configured project: path globs, target-name patterns and weight."""

    name: str
    paths: tuple[str, ...] = ()
    target_patterns: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetResult:
    """One target of a build's graph: its name and state (a ``TargetState`` value)."""

    name: str
    state: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MapInput:
    """A build's target graph (empty when none ran), the change, and the projects."""

    queue: str
    targets: tuple[TargetResult, ...]
    changed_files: tuple[str, ...]
    projects: tuple[ProjectSpec, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectImpact:
    """One project's share of a build and a change."""

    project: str
    targets: tuple[str, ...]
    affected: bool
    verdict: ProjectVerdict
