"""The local runner's engine: builds as asyncio tasks, their state in memory.

A build goes PENDING (resolving and checking out) -> RUNNING (targets run one
after another, in configuration order) -> SUCCEEDED / FAILED / CANCELLED /
ERRORED. A failing or timed-out target does not stop the ones after it, so
the target graph is complete; a cancelled build stops at once, and targets
that never started are reported CANCELLED. Anything that goes wrong before a
target runs (SourceControl, clone, fetch, worktree) makes the build ERRORED:
it says nothing about the code.

State lives in memory for the life of the process; at most
``max_finished_builds`` finished builds are kept (oldest forgotten first, logs
included). A forgotten build, like any build of an earlier process, is
``NOT_FOUND``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from stovepipe.extensions.buildrunner.errors import BuildNotFound, TargetNotFound
from stovepipe.extensions.buildrunner.local.environment import target_environment
from stovepipe.extensions.buildrunner.local.locator import CommitLocator, LocatorError
from stovepipe.extensions.buildrunner.local.logs import TargetLog
from stovepipe.extensions.buildrunner.local.process import TargetProcess
from stovepipe.extensions.buildrunner.local.workspace import CheckoutError, Workspace
from stovepipe.extensions.buildrunner.model import (
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
from stovepipe.extensions.buildrunner.validation import validate_trigger
from stovepipe.redaction import redact_line

_log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 500
_CANCEL_SLACK_SECONDS = 10.0


def redact(message: str) -> str:
    """A report message: one line, bounded, without credentials."""
    return redact_line(message, _MESSAGE_LIMIT)


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """Limits of a local runner; the defaults suit a developer machine."""

    log_limit_bytes: int = 1024 * 1024
    max_finished_builds: int = 1000
    kill_grace_seconds: float = 10.0
    default_timeout_seconds: float = 3600.0
    path: str | None = None
    """``PATH`` handed to targets; ``serve`` fills in its own ``PATH`` when unset."""


@dataclass
class _Target:
    spec: TargetSpec
    index: int
    state: TargetState = TargetState.PENDING
    exit_code: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    log: TargetLog | None = None

    def report(self) -> TargetReport:
        if self.started_at is None:
            duration = 0.0
        else:
            end = self.ended_at if self.ended_at is not None else time.monotonic()
            duration = end - self.started_at
        return TargetReport(
            name=self.spec.name,
            state=self.state,
            exit_code=self.exit_code,
            duration_seconds=duration,
            paths=self.spec.paths,
        )


@dataclass
class _Build:
    build_id: str
    spec: TriggerSpec
    targets: list[_Target]
    state: BuildState = BuildState.PENDING
    message: str = ""
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    cleaning: bool = False
    notes: list[str] = field(default_factory=list)


class LocalBuildRunner:
    """Implements ``BuildRunner`` by running targets as local processes.

    Call ``start`` before the first trigger and ``close`` at the end; ``close``
    cancels every running build and waits for its checkout to be removed.
    """

    def __init__(
        self, locator: CommitLocator, workspace: Workspace, settings: RunnerSettings | None = None
    ) -> None:
        self._locator = locator
        self._workspace = workspace
        self._settings = settings or RunnerSettings()
        self._builds: dict[str, _Build] = {}
        self._by_key: dict[str, str] = {}
        self._finished: deque[str] = deque()

    async def start(self) -> None:
        await self._workspace.prepare()

    async def close(self) -> None:
        running = [b for b in self._builds.values() if b.task is not None and not b.task.done()]
        for build in running:
            self._request_cancel(build)
        tasks = {b.task for b in running if b.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self._cancel_bound())

    async def trigger(self, spec: TriggerSpec) -> str:
        existing = self._by_key.get(spec.idempotency_key) if spec.idempotency_key else None
        if existing is not None:
            return existing
        validate_trigger(spec)
        build = _Build(
            build_id=f"build-{uuid.uuid4().hex}",
            spec=spec,
            targets=[_Target(spec=t, index=i) for i, t in enumerate(spec.targets)],
        )
        self._builds[build.build_id] = build
        if spec.idempotency_key:
            self._by_key[spec.idempotency_key] = build.build_id
        build.task = asyncio.create_task(self._drive(build), name=build.build_id)
        return build.build_id

    async def status(self, build_id: str) -> BuildReport:
        build = self._get(build_id)
        return BuildReport(
            state=build.state,
            targets=tuple(t.report() for t in build.targets),
            message=build.message,
        )

    async def cancel(self, build_id: str) -> BuildState:
        build = self._get(build_id)
        if build.state.terminal or build.task is None:
            return build.state
        self._request_cancel(build)
        await asyncio.wait({build.task}, timeout=self._cancel_bound())
        return build.state

    async def get_log(self, build_id: str, target: str) -> LogChunk:
        build = self._get(build_id)
        for candidate in build.targets:
            if candidate.spec.name == target:
                if candidate.log is None:
                    return LogChunk(content="")
                return await asyncio.to_thread(candidate.log.read)
        raise TargetNotFound(build_id, target)

    def _get(self, build_id: str) -> _Build:
        try:
            return self._builds[build_id]
        except KeyError:
            raise BuildNotFound(build_id) from None

    def _cancel_bound(self) -> float:
        return self._settings.kill_grace_seconds + _CANCEL_SLACK_SECONDS

    def _request_cancel(self, build: _Build) -> None:
        """Interrupt the build's task once; never while it is cleaning up."""
        if build.cancel_requested or build.cleaning or build.task is None:
            return
        build.cancel_requested = True
        build.task.cancel()

    async def _drive(self, build: _Build) -> None:
        state, message = await self._outcome(build)
        build.cleaning = True
        try:
            await self._workspace.release(build.build_id, build.spec.source.repository)
        except Exception:
            _log.exception("could not remove the checkout of %s", build.build_id)
        await self._finish(build, state, message)

    async def _outcome(self, build: _Build) -> tuple[BuildState, str]:
        """Run the build to an end and say how it ended; never raises."""
        try:
            state = await self._execute(build)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return BuildState.CANCELLED, "cancelled"
        except (LocatorError, CheckoutError) as exc:
            return BuildState.ERRORED, redact(f"checkout failed: {exc}")
        except Exception as exc:
            _log.exception("build %s failed inside the runner", build.build_id)
            return BuildState.ERRORED, redact(f"runner error: {type(exc).__name__}: {exc}")
        return state, redact("; ".join(build.notes))

    async def _execute(self, build: _Build) -> BuildState:
        spec = build.spec
        revision = await self._locator.revision(spec.source, spec.head_uri)
        changed: tuple[str, ...] | None = None
        if spec.base_uri:
            try:
                changed = await self._locator.changed_files(
                    spec.source, spec.base_uri, spec.head_uri
                )
            except LocatorError as exc:
                build.notes.append(f"changed files unknown, every target ran ({exc})")
        for target in build.targets:
            if not should_run(target.spec, changed):
                target.state = TargetState.SKIPPED
        checkout = await self._workspace.check_out(build.build_id, spec.source.repository, revision)
        build.state = BuildState.RUNNING
        env = target_environment(
            spec,
            build_id=build.build_id,
            home=self._workspace.home_dir(build.build_id),
            path=self._settings.path,
        )
        for target in build.targets:
            if target.state is TargetState.PENDING:
                await self._run_target(build, target, checkout, env)
        return verdict(t.state for t in build.targets)

    async def _run_target(
        self, build: _Build, target: _Target, checkout: Path, env: dict[str, str]
    ) -> None:
        timeout = target.spec.timeout_seconds
        if timeout is None or timeout <= 0:
            timeout = self._settings.default_timeout_seconds
        log = TargetLog(
            self._workspace.log_path(build.build_id, target.index), self._settings.log_limit_bytes
        )
        target.log = log
        target.started_at = time.monotonic()
        target.state = TargetState.RUNNING
        try:
            process = await TargetProcess.start(
                target.spec.command,
                cwd=checkout,
                env=env,
                log=log,
                kill_grace=self._settings.kill_grace_seconds,
            )
        except BaseException:
            log.close()
            target.ended_at = time.monotonic()
            raise
        try:
            target.state, target.exit_code = await process.finish(timeout)
        except asyncio.CancelledError:
            target.state, target.exit_code = TargetState.CANCELLED, await process.stop()
            raise
        finally:
            target.ended_at = time.monotonic()

    async def _finish(self, build: _Build, state: BuildState, message: str) -> None:
        now = time.monotonic()
        for target in build.targets:
            if not target.state.terminal:
                target.state = TargetState.CANCELLED
                target.ended_at = now if target.started_at is not None else None
        build.state, build.message = state, message
        _log.info("build %s %s%s", build.build_id, state.value, f": {message}" if message else "")
        self._finished.append(build.build_id)
        while len(self._finished) > self._settings.max_finished_builds:
            await self._forget(self._finished.popleft())

    async def _forget(self, build_id: str) -> None:
        build = self._builds.pop(build_id, None)
        if build is not None and self._by_key.get(build.spec.idempotency_key) == build_id:
            del self._by_key[build.spec.idempotency_key]
        with contextlib.suppress(OSError):
            await self._workspace.forget_logs(build_id)
