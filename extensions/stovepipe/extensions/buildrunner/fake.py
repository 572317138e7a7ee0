"""An in-process ``BuildRunner`` for tests of code that drives builds.

Outcomes are scripted per head URI; anything unscripted succeeds. The fake
keeps the contract the servers keep (idempotency keys, target selection,
SKIPPED/TIMED_OUT/CANCELLED targets, the log cap, ``NOT_FOUND`` and
``INVALID_ARGUMENT`` as ``grpc.aio.AioRpcError``), so a test that passes
against it says something about the real runner too; the contract suite in
``tests/extensions/buildrunner`` holds both to the same behaviour.

Time is read from an injectable monotonic clock: a hanging target whose
timeout has passed is reported TIMED_OUT on the next call.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from stovepipe.extensions.buildrunner.errors import (
    BuildNotFound,
    BuildRunnerError,
    TargetNotFound,
    as_rpc_error,
)
from stovepipe.extensions.buildrunner.feed import EndedFeed
from stovepipe.extensions.buildrunner.model import (
    BuildEnded,
    BuildReport,
    BuildState,
    LogChunk,
    TargetReport,
    TargetSpec,
    TargetState,
    TriggerSpec,
    verdict,
)
from stovepipe.extensions.buildrunner.selection import should_run
from stovepipe.extensions.buildrunner.tracecontext import current_trace_context
from stovepipe.extensions.buildrunner.validation import validate_trigger

__all__ = ["FakeBuildRunner", "Outcome", "TargetScript"]

DEFAULT_LOG_LIMIT_BYTES = 1024 * 1024
_KILLED_EXIT_CODE = -15


@dataclass(frozen=True, kw_only=True)
class TargetScript:
    """How one target ends: ``state`` SUCCEEDED, FAILED or TIMED_OUT.

    A target that ``hangs`` stays RUNNING until it is released, its build is
    cancelled or its timeout passes.
    """

    state: TargetState = TargetState.SUCCEEDED
    exit_code: int = 0
    log: str = ""
    hangs: bool = False


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a build of one head does. Unlisted targets succeed with no output."""

    targets: Mapping[str, TargetScript] = field(default_factory=dict)
    hang_first: bool = False
    error: str | None = None
    raises: BaseException | None = None

    @classmethod
    def succeed(cls, logs: Mapping[str, str] | None = None) -> Outcome:
        return cls(targets={name: TargetScript(log=log) for name, log in (logs or {}).items()})

    @classmethod
    def fail(cls, target: str, *, exit_code: int = 1, log: str = "") -> Outcome:
        return cls(
            targets={target: TargetScript(state=TargetState.FAILED, exit_code=exit_code, log=log)}
        )

    @classmethod
    def time_out(cls, target: str) -> Outcome:
        script = TargetScript(state=TargetState.TIMED_OUT, exit_code=_KILLED_EXIT_CODE)
        return cls(targets={target: script})

    @classmethod
    def errored(cls, message: str) -> Outcome:
        """The runner fails before any target runs (a checkout failure, say)."""
        return cls(error=message)

    @classmethod
    def hang(cls, target: str | None = None) -> Outcome:
        """Hang at ``target``, or at the first target that runs."""
        if target is None:
            return cls(hang_first=True)
        return cls(targets={target: TargetScript(hangs=True)})

    @classmethod
    def raising(cls, error: BaseException) -> Outcome:
        """``trigger`` raises ``error`` (for example ``errors.rpc_error(UNAVAILABLE, ...)``)."""
        return cls(raises=error)


@dataclass
class _Step:
    spec: TargetSpec
    script: TargetScript
    state: TargetState
    exit_code: int = 0
    started_at: float | None = None
    ended_at: float | None = None


@dataclass
class _Build:
    build_id: str
    spec: TriggerSpec
    steps: list[_Step]
    state: BuildState
    message: str = ""
    announced: bool = False
    trace_context: dict[str, str] = field(default_factory=dict)


class FakeBuildRunner:
    """Scripted ``BuildRunner``; inspect ``triggers``, ``started`` and ``cancels``."""

    def __init__(
        self,
        *,
        log_limit_bytes: int = DEFAULT_LOG_LIMIT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log_limit = log_limit_bytes
        self._clock = clock
        self._outcomes: dict[str, Outcome] = {}
        self._changes: dict[tuple[str, str], tuple[str, ...]] = {}
        self._builds: dict[str, _Build] = {}
        self._by_key: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.triggers: list[TriggerSpec] = []
        """Every ``trigger`` call, repeats and refusals included."""
        self.started: list[tuple[str, str]] = []
        """``(build id, target)`` for every target that started to run."""
        self.cancels: list[str] = []
        self._ended = EndedFeed()

    def script(self, head_uri: str, outcome: Outcome) -> None:
        """Builds of ``head_uri`` triggered from now on end as ``outcome`` says."""
        self._outcomes[head_uri] = outcome

    def set_changed_files(self, base_uri: str, head_uri: str, paths: Sequence[str]) -> None:
        """What changed between two commits; without it an incremental build runs everything."""
        self._changes[(base_uri, head_uri)] = tuple(paths)

    def release(self, build_id: str, script: TargetScript | None = None) -> None:
        """End the hanging target of a build as ``script`` says (default: success)."""
        build = self._get(build_id)
        for step in build.steps:
            if step.state is TargetState.RUNNING:
                step.script = script or TargetScript()
        self._advance(build)

    def running(self) -> list[tuple[str, str]]:
        """``(build id, target)`` for every target running right now."""
        for build in self._builds.values():
            self._advance(build)
        return [
            (build.build_id, step.spec.name)
            for build in self._builds.values()
            for step in build.steps
            if step.state is TargetState.RUNNING
        ]

    async def trigger(self, spec: TriggerSpec) -> str:
        self.triggers.append(spec)
        if spec.idempotency_key in self._by_key:
            return self._by_key[spec.idempotency_key]
        outcome = self._outcomes.get(spec.head_uri, Outcome())
        if outcome.raises is not None:
            raise outcome.raises
        try:
            validate_trigger(spec)
        except BuildRunnerError as exc:
            raise as_rpc_error(exc) from None
        build = self._new_build(spec, outcome)
        self._builds[build.build_id] = build
        if spec.idempotency_key:
            self._by_key[spec.idempotency_key] = build.build_id
        self._advance(build)
        self._announce_if_ended(build)
        return build.build_id

    def watch_builds(self) -> AbstractAsyncContextManager[AsyncIterator[BuildEnded]]:
        """Notices of builds the fake saw end (it advances builds when asked about them)."""
        return self._ended.watch()

    def _announce_if_ended(self, build: _Build) -> None:
        if build.state.terminal and not build.announced:
            build.announced = True
            self._ended.publish(
                BuildEnded(
                    build_id=build.build_id,
                    state=build.state,
                    idempotency_key=build.spec.idempotency_key,
                    trace_context=build.trace_context,
                )
            )

    async def status(self, build_id: str) -> BuildReport:
        build = self._get(build_id)
        self._advance(build)
        return BuildReport(
            state=build.state,
            targets=tuple(
                TargetReport(
                    name=step.spec.name,
                    state=step.state,
                    exit_code=step.exit_code,
                    duration_seconds=self._duration(step),
                    paths=step.spec.paths,
                )
                for step in build.steps
            ),
            message=build.message,
        )

    async def cancel(self, build_id: str) -> BuildState:
        build = self._get(build_id)
        self.cancels.append(build_id)
        self._advance(build)
        if build.state.terminal:
            return build.state
        for step in build.steps:
            if not step.state.terminal:
                step.exit_code = _KILLED_EXIT_CODE if step.state is TargetState.RUNNING else 0
                step.state = TargetState.CANCELLED
                step.ended_at = self._clock()
        build.state = BuildState.CANCELLED
        build.message = "cancelled"
        self._announce_if_ended(build)
        return build.state

    async def get_log(self, build_id: str, target: str) -> LogChunk:
        build = self._get(build_id)
        self._advance(build)
        for step in build.steps:
            if step.spec.name == target:
                ran = step.started_at is not None
                data = step.script.log.encode() if ran else b""
                return LogChunk.tail(data, self._log_limit)
        raise as_rpc_error(TargetNotFound(build_id, target))

    def _get(self, build_id: str) -> _Build:
        try:
            return self._builds[build_id]
        except KeyError:
            raise as_rpc_error(BuildNotFound(build_id)) from None

    def _new_build(self, spec: TriggerSpec, outcome: Outcome) -> _Build:
        changed: tuple[str, ...] | None = None
        if spec.base_uri:
            changed = spec.changed_paths
            if changed is None:
                changed = self._changes.get((spec.base_uri, spec.head_uri))
        steps = []
        hang_pending = outcome.hang_first
        for target in spec.targets:
            script = outcome.targets.get(target.name, TargetScript())
            selected = should_run(target, changed)
            if selected and hang_pending:
                script, hang_pending = TargetScript(hangs=True), False
            state = TargetState.PENDING if selected else TargetState.SKIPPED
            steps.append(_Step(spec=target, script=script, state=state))
        build = _Build(
            build_id=f"fake-build-{next(self._ids)}",
            spec=spec,
            steps=steps,
            state=BuildState.PENDING,
            trace_context=current_trace_context(),
        )
        if outcome.error is not None:
            for step in steps:
                if step.state is TargetState.PENDING:
                    step.state = TargetState.CANCELLED
            build.state, build.message = BuildState.ERRORED, outcome.error
        return build

    def _advance(self, build: _Build) -> None:
        """Move a build as far as its script allows at the current clock reading."""
        if build.state.terminal:
            return
        now = self._clock()
        for step in build.steps:
            if step.state.terminal:
                continue
            if step.started_at is None:
                step.started_at = now
                step.state = TargetState.RUNNING
                self.started.append((build.build_id, step.spec.name))
            if step.script.hangs:
                timeout = step.spec.timeout_seconds
                if not timeout or timeout <= 0 or now - step.started_at < timeout:
                    build.state = BuildState.RUNNING
                    return
                step.state, step.exit_code = TargetState.TIMED_OUT, _KILLED_EXIT_CODE
            else:
                step.state, step.exit_code = step.script.state, step.script.exit_code
            step.ended_at = now
        build.state = verdict(step.state for step in build.steps)
        self._announce_if_ended(build)

    def _duration(self, step: _Step) -> float:
        if step.started_at is None:
            return 0.0
        end = step.ended_at if step.ended_at is not None else self._clock()
        return max(0.0, end - step.started_at)
