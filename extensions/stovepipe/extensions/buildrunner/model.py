"""The values the BuildRunner contract speaks in, independent of protobuf.

Enum values are lower-case strings so core can store them (and map them onto
its own ``BuildStatus``) without a translation table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class BuildState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ERRORED = "errored"
    """The runner itself failed; the build says nothing about the code."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_BUILD_STATES


_TERMINAL_BUILD_STATES = frozenset(
    {BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED, BuildState.ERRORED}
)


class TargetState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """An incremental build found no changed file matching the target's paths."""
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    """The target was stopped, or will never start because its build ended early."""

    @property
    def terminal(self) -> bool:
        return self not in {TargetState.PENDING, TargetState.RUNNING}


class QueueSourceLike(Protocol):
    """Any value naming a Queue's repository and ref (the SourceControl client's
    ``QueueSource`` fits), so core need not convert between two identical types."""

    @property
    def queue(self) -> str: ...

    @property
    def repository(self) -> str: ...

    @property
    def ref(self) -> str: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildSource:
    """A Queue's repository and ref as a runner received them on the wire."""

    queue: str
    repository: str
    ref: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetSpec:
    """One configured target.

    ``paths`` are gitignore-style globs; an incremental build runs the target only
    when a changed file matches one, and an empty tuple means "always run".
    ``timeout_seconds`` of ``None`` or ``<= 0`` means the runner's default.
    ``network`` lets the target use the network; a runner that isolates builds
    keeps the others off it.
    """

    name: str
    command: str
    paths: tuple[str, ...] = ()
    timeout_seconds: float | None = None
    network: bool = False


@dataclass(frozen=True, kw_only=True)
class TriggerSpec:
    """Everything a runner needs to start one build.

    An empty ``base_uri`` asks for a full build. Two triggers with the same
    non-empty ``idempotency_key`` get the same build, whatever else they say.
    """

    source: QueueSourceLike
    base_uri: str = ""
    head_uri: str
    project: str = ""
    targets: tuple[TargetSpec, ...] = ()
    idempotency_key: str = ""
    head_revision: str = ""
    """The VCS-native revision of ``head_uri`` when the caller knows it; empty: ask."""
    changed_paths: tuple[str, ...] | None = None
    """What changed between ``base_uri`` and ``head_uri`` when the caller knows it;
    ``None``: ask SourceControl."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetReport:
    """One node of a build's target graph."""

    name: str
    state: TargetState
    exit_code: int = 0
    duration_seconds: float = 0.0
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildReport:
    """A build's state, its target graph and a short, redacted explanation."""

    state: BuildState
    targets: tuple[TargetReport, ...] = ()
    message: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildEnded:
    """A runner's notice that a build reached a terminal state: a hint the receiver
    confirms with ``status`` before acting, never a verdict in itself."""

    build_id: str
    state: BuildState
    idempotency_key: str = ""
    trace_context: Mapping[str, str] = field(default_factory=dict)
    """The trace context the build was triggered in (telemetry only, may be empty)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LogChunk:
    """The kept output of one target; ``truncated`` when older output was dropped."""

    content: str
    truncated: bool = False

    @classmethod
    def tail(cls, data: bytes, limit: int, *, dropped: bool = False) -> LogChunk:
        """The last ``limit`` bytes of ``data`` as text (at most ``limit`` bytes of UTF-8).

        The tail is kept, not the head, because a failing build says why at the
        end. A character cut in half by the limit is dropped; invalid UTF-8 from
        the target becomes U+FFFD. ``dropped`` says older output is already gone.
        """
        kept = data[-limit:] if limit > 0 else b""
        truncated = dropped or len(kept) < len(data)
        if truncated:
            kept = kept.lstrip(bytes(range(0x80, 0xC0)))
        text = kept.decode("utf-8", errors="replace")
        excess = len(text.encode("utf-8")) - max(limit, 0)
        cut = 0
        while excess > 0:
            excess -= len(text[cut].encode("utf-8"))
            cut += 1
        return cls(content=text[cut:], truncated=truncated or cut > 0)


def verdict(states: Iterable[TargetState]) -> BuildState:
    """The state of a build whose targets all ran to an end: any failure fails it."""
    failing = {TargetState.FAILED, TargetState.TIMED_OUT}
    return BuildState.FAILED if any(s in failing for s in states) else BuildState.SUCCEEDED
