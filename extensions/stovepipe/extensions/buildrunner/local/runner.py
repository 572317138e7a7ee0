"""The local runner's engine: builds as asyncio tasks, their records on disk.

A build goes PENDING (resolving and checking out) -> RUNNING (targets run one
after another, in configuration order) -> SUCCEEDED / FAILED / CANCELLED /
ERRORED. A failing or timed-out target does not stop the ones after it, so
the target graph is complete; a cancelled build stops at once, and targets
that never started are reported CANCELLED. Anything that goes wrong before a
target runs (SourceControl, clone, fetch, worktree, sandbox) makes the build
ERRORED: it says nothing about the code. Targets run in the sandbox of
``sandbox.py`` unless the settings turn it off.

Every build has a record on disk (``records.py``), written before ``trigger``
returns its id, when the build starts running, after each target and when it
ends; a build reports a terminal state only once the record saying so is
durable. A new process loads the records before it answers anything:

- a finished build answers ``Status`` and ``GetLog`` as it did before;
- a build that a crash of the runner interrupted runs again from the start,
  under the same id and in a fresh checkout, at most
  ``RunnerSettings.max_crash_reruns`` times; the next crash ends it ERRORED,
  so a build that kills its runner cannot loop, and no build is reported
  SUCCEEDED without its targets having run to the end in one run;
- a build that a graceful stop (``close``) interrupted runs again without
  counting against that bound.

At most ``max_finished_builds`` finished builds are kept (oldest forgotten
first, record and logs included). A forgotten build is ``NOT_FOUND``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from stovepipe.extensions.buildrunner.errors import BuildNotFound, BuildRunnerError, TargetNotFound
from stovepipe.extensions.buildrunner.feed import EndedFeed
from stovepipe.extensions.buildrunner.local.environment import target_environment
from stovepipe.extensions.buildrunner.local.locator import CommitLocator, LocatorError
from stovepipe.extensions.buildrunner.local.logs import TargetLog, read_log
from stovepipe.extensions.buildrunner.local.process import TargetProcess
from stovepipe.extensions.buildrunner.local.records import BuildRecord, RecordStore, TargetRecord
from stovepipe.extensions.buildrunner.local.sandbox import (
    Bubblewrap,
    BuildPaths,
    Limits,
    Sandbox,
    SandboxError,
    Unsandboxed,
    kill_orphaned_sandboxes,
)
from stovepipe.extensions.buildrunner.local.workspace import CheckoutError, Workspace
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
from stovepipe.redaction import redact_line

_log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 500
_CANCEL_SLACK_SECONDS = 10.0
_T = TypeVar("_T")


def redact(message: str) -> str:
    """A report message: one line, bounded, without credentials."""
    return redact_line(message, _MESSAGE_LIMIT)


class RecordUnavailable(BuildRunnerError):
    """The build could not be recorded, so it was not started; retrying may work."""

    code = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """Limits of a local runner; the defaults suit a developer machine."""

    log_limit_bytes: int = 1024 * 1024
    max_finished_builds: int = 1000
    kill_grace_seconds: float = 10.0
    default_timeout_seconds: float = 3600.0
    path: str | None = None
    """``PATH`` handed to targets; ``serve`` fills in its own ``PATH`` when unset."""
    max_crash_reruns: int = 2
    """How often a build interrupted by a crash of the runner is run again."""
    sandbox: bool = True
    """Run targets in bubblewrap; ``False`` runs them as plain processes of the
    runner's user, for trusted code only."""
    hidden_paths: tuple[Path, ...] = ()
    """Directories or files builds must not see (Stovepipe's state directory); the
    work directory is always hidden."""
    build_user: tuple[int, int] = (65534, 65534)
    """The uid and gid targets run as when the runner is root."""
    max_processes: int = 4096
    max_file_size_bytes: int = 16 * 1024**3
    max_open_files: int = 65536
    bwrap: str = "bwrap"
    """The bubblewrap executable: a name looked up on the runner's ``PATH``, or a path."""


def make_sandbox(settings: RunnerSettings) -> Sandbox:
    if not settings.sandbox:
        return Unsandboxed()
    return Bubblewrap(
        limits=Limits(
            processes=settings.max_processes,
            file_size_bytes=settings.max_file_size_bytes,
            open_files=settings.max_open_files,
        ),
        hidden=settings.hidden_paths,
        build_user=settings.build_user,
        executable=settings.bwrap,
    )


@dataclass
class _Target:
    spec: TargetSpec
    index: int
    state: TargetState = TargetState.PENDING
    exit_code: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    recorded_duration: float = 0.0
    """The duration an earlier process recorded; ``started_at`` is of this process."""
    log: TargetLog | None = None
    log_name: str | None = None
    log_truncated: bool = False

    def duration(self) -> float:
        if self.started_at is None:
            return self.recorded_duration
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return end - self.started_at

    def report(self) -> TargetReport:
        return TargetReport(
            name=self.spec.name,
            state=self.state,
            exit_code=self.exit_code,
            duration_seconds=self.duration(),
            paths=self.spec.paths,
        )

    def record(self) -> TargetRecord:
        return TargetRecord(
            state=self.state,
            exit_code=self.exit_code,
            duration_seconds=self.duration(),
            log=self.log_name,
            log_truncated=self.log.dropped if self.log is not None else self.log_truncated,
        )


def _fresh_targets(spec: TriggerSpec) -> list[_Target]:
    return [_Target(spec=t, index=i) for i, t in enumerate(spec.targets)]


@dataclass
class _Build:
    build_id: str
    spec: TriggerSpec
    targets: list[_Target]
    state: BuildState = BuildState.PENDING
    message: str = ""
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    stopping: bool = False
    """The cancel came from a graceful stop of the runner, not from a caller."""
    cleaning: bool = False
    notes: list[str] = field(default_factory=list)
    crashes: int = 0
    finished_at: float | None = None
    recorded: asyncio.Event = field(default_factory=asyncio.Event)
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)
    trace_context: dict[str, str] = field(default_factory=dict)
    """The trace the build was asked for in, echoed by its end notice (not persisted)."""


async def _in_thread_to_the_end(function: Callable[..., _T], *args: object) -> _T:
    """Run blocking ``function`` in a thread and wait for it even through a cancel
    (re-raised afterwards), so two writes of one record never overlap."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        if not future.cancelled() and (error := future.exception()) is not None:
            _log.error("a write interrupted by a cancel failed: %s", error)
        raise


class LocalBuildRunner:
    """Implements ``BuildRunner`` by running targets as local processes.

    Call ``start`` before the first trigger (it loads the records and resumes
    interrupted builds) and ``close`` at the end; ``close`` stops every running
    build, waits for its checkout to be removed, and leaves it to be run again
    by the next process.
    """

    def __init__(
        self,
        locator: CommitLocator,
        workspace: Workspace,
        settings: RunnerSettings | None = None,
    ) -> None:
        self._locator = locator
        self._workspace = workspace
        self._settings = settings or RunnerSettings()
        self._sandbox = make_sandbox(self._settings)
        self._records = RecordStore(workspace.records_dir)
        self._builds: dict[str, _Build] = {}
        self._by_key: dict[str, str] = {}
        self._finished: deque[str] = deque()
        self._ended = EndedFeed()

    async def start(self) -> None:
        orphans = await asyncio.to_thread(kill_orphaned_sandboxes, self._workspace.builds_dir)
        if orphans:
            _log.warning("killed %d sandboxes an earlier process left running", len(orphans))
        records = await asyncio.to_thread(self._records.load)
        await self._workspace.prepare(keep_logs_of=frozenset(r.build_id for r in records))
        finished = [r for r in records if r.state.terminal]
        for record in sorted(finished, key=lambda r: r.finished_at or 0.0):
            self._adopt(record)
            self._finished.append(record.build_id)
        await self._evict()
        for record in records:
            if not record.state.terminal:
                await self._resume(record)

    async def close(self) -> None:
        running = [b for b in self._builds.values() if b.task is not None and not b.task.done()]
        for build in running:
            self._request_cancel(build, stopping=True)
        tasks = {b.task for b in running if b.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self._cancel_bound())

    async def trigger(self, spec: TriggerSpec) -> str:
        while spec.idempotency_key and (existing := self._by_key.get(spec.idempotency_key)):
            build = self._builds[existing]
            await build.recorded.wait()
            if self._builds.get(existing) is build:
                return existing
        validate_trigger(spec)
        build = _Build(
            build_id=f"build-{uuid.uuid4().hex}",
            spec=spec,
            targets=_fresh_targets(spec),
            trace_context=current_trace_context(),
        )
        self._register(build)
        await asyncio.shield(self._record_and_launch(build))
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

    def watch_builds(self) -> AbstractAsyncContextManager[AsyncIterator[BuildEnded]]:
        return self._ended.watch()

    @property
    def watchers(self) -> int:
        """``WatchBuilds`` streams open right now."""
        return self._ended.watchers

    async def get_log(self, build_id: str, target: str) -> LogChunk:
        build = self._get(build_id)
        for candidate in build.targets:
            if candidate.spec.name != target:
                continue
            if candidate.log is not None:
                return await asyncio.to_thread(candidate.log.read)
            if candidate.log_name is not None:
                path = self._workspace.root / candidate.log_name
                limit = self._settings.log_limit_bytes
                return await asyncio.to_thread(
                    read_log, path, limit, dropped=candidate.log_truncated
                )
            return LogChunk(content="")
        raise TargetNotFound(build_id, target)

    def _get(self, build_id: str) -> _Build:
        try:
            return self._builds[build_id]
        except KeyError:
            raise BuildNotFound(build_id) from None

    def _register(self, build: _Build) -> None:
        self._builds[build.build_id] = build
        if build.spec.idempotency_key:
            self._by_key[build.spec.idempotency_key] = build.build_id

    def _unregister(self, build: _Build) -> None:
        if self._builds.get(build.build_id) is build:
            del self._builds[build.build_id]
        if self._by_key.get(build.spec.idempotency_key) == build.build_id:
            del self._by_key[build.spec.idempotency_key]

    async def _record_and_launch(self, build: _Build) -> None:
        """Start a registered build once its record is durable; shielded from the
        caller's cancel, so a build whose record landed always starts (a retried
        trigger with the same key then finds it)."""
        try:
            await self._save(build)
        except OSError as exc:
            self._unregister(build)
            _log.exception("could not record build %s", build.build_id)
            raise RecordUnavailable(f"the runner could not record the build: {exc}") from None
        finally:
            build.recorded.set()
        self._launch(build)

    def _launch(self, build: _Build) -> None:
        build.task = asyncio.create_task(self._drive(build), name=build.build_id)

    def _adopt(self, record: BuildRecord) -> _Build:
        """A build as an earlier process left it, registered; not started."""
        targets = _fresh_targets(record.spec)
        for target, result in zip(targets, record.targets, strict=True):
            target.state = result.state
            target.exit_code = result.exit_code
            target.recorded_duration = result.duration_seconds
            target.log_name = result.log
            target.log_truncated = result.log_truncated
        build = _Build(
            build_id=record.build_id,
            spec=record.spec,
            targets=targets,
            state=record.state,
            message=record.message,
            crashes=record.crashes,
            finished_at=record.finished_at,
        )
        build.recorded.set()
        self._register(build)
        return build

    async def _resume(self, record: BuildRecord) -> None:
        """Run again a build an earlier process did not finish, or end it ERRORED
        when crashes have interrupted it too often."""
        crashes = record.crashes if record.stopped else record.crashes + 1
        limit = self._settings.max_crash_reruns
        if crashes > limit:
            build = self._adopt(record)
            build.crashes = crashes
            message = f"the runner crashed during each of the {crashes} runs of this build"
            await self._finish(build, BuildState.ERRORED, f"{message}; not running it again")
            return
        if record.stopped:
            note = "run again: the runner was stopped during an earlier run"
        else:
            note = f"run again after the runner crashed during it (re-run {crashes} of {limit})"
        build = _Build(
            build_id=record.build_id,
            spec=record.spec,
            targets=_fresh_targets(record.spec),
            crashes=crashes,
            notes=[note],
        )
        build.recorded.set()
        self._register(build)
        await self._save(build)
        _log.info("build %s: %s", build.build_id, note)
        self._launch(build)

    def _record(
        self,
        build: _Build,
        *,
        state: BuildState | None = None,
        message: str | None = None,
        stopped: bool = False,
    ) -> BuildRecord:
        return BuildRecord(
            build_id=build.build_id,
            spec=build.spec,
            state=state or build.state,
            message=build.message if message is None else message,
            targets=tuple(t.record() for t in build.targets),
            crashes=build.crashes,
            stopped=stopped,
            finished_at=build.finished_at,
        )

    async def _save(
        self,
        build: _Build,
        *,
        state: BuildState | None = None,
        message: str | None = None,
        stopped: bool = False,
    ) -> None:
        """Make the build's record durable; the snapshot is taken once earlier writes
        of the same record are done, so the newest state always lands last."""
        async with build.saving:
            record = self._record(build, state=state, message=message, stopped=stopped)
            await _in_thread_to_the_end(self._records.save, record)

    async def _save_or_log(
        self,
        build: _Build,
        *,
        state: BuildState | None = None,
        message: str | None = None,
        stopped: bool = False,
    ) -> None:
        """``_save``, logging a failed write instead of raising: the build goes on, and
        at worst a crash makes it run again."""
        try:
            await self._save(build, state=state, message=message, stopped=stopped)
        except OSError:
            _log.exception("could not record the progress of build %s", build.build_id)

    def _cancel_bound(self) -> float:
        return self._settings.kill_grace_seconds + _CANCEL_SLACK_SECONDS

    def _request_cancel(self, build: _Build, *, stopping: bool = False) -> None:
        """Interrupt the build's task once; never while it is cleaning up."""
        if build.cancel_requested or build.cleaning or build.task is None:
            return
        build.cancel_requested = True
        build.stopping = stopping
        build.task.cancel()

    async def _drive(self, build: _Build) -> None:
        """Run, report, then clean up: the verdict does not wait for the checkout's removal
        (a runner killed before the removal leaves a directory its next start removes)."""
        state, message = await self._outcome(build)
        build.cleaning = True
        if build.stopping and state is BuildState.CANCELLED:
            await self._release(build)
            await self._save_or_log(build, state=BuildState.PENDING, stopped=True)
            _log.info("build %s stopped with the runner; its next start runs it", build.build_id)
            return
        await self._finish(build, state, message)
        await self._release(build)

    async def _release(self, build: _Build) -> None:
        try:
            await self._workspace.release(build.build_id, build.spec.source.repository)
        except Exception:
            _log.exception("could not remove the checkout of %s", build.build_id)

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
        except SandboxError as exc:
            return BuildState.ERRORED, redact(str(exc))
        except Exception as exc:
            _log.exception("build %s failed inside the runner", build.build_id)
            return BuildState.ERRORED, redact(f"runner error: {type(exc).__name__}: {exc}")
        return state, redact("; ".join(build.notes))

    async def _execute(self, build: _Build) -> BuildState:
        spec = build.spec
        # What the trigger already says is not asked of SourceControl again.
        revision = spec.head_revision or await self._locator.revision(spec.source, spec.head_uri)
        changed: tuple[str, ...] | None = None
        if spec.base_uri and spec.changed_paths is not None:
            changed = spec.changed_paths
        elif spec.base_uri:
            try:
                changed = await self._locator.changed_files(
                    spec.source, spec.base_uri, spec.head_uri
                )
            except LocatorError as exc:
                build.notes.append(f"changed files unknown, every target ran ({exc})")
        for target in build.targets:
            if not should_run(target.spec, changed):
                target.state = TargetState.SKIPPED
        await self._workspace.check_out(build.build_id, spec.source.repository, revision)
        paths = self._workspace.build_paths(build.build_id, spec.source.repository)
        await self._sandbox.enter(paths)
        build.state = BuildState.RUNNING
        await self._save_or_log(build)
        env = target_environment(
            spec,
            build_id=build.build_id,
            home=paths.home,
            path=self._settings.path,
        )
        for target in build.targets:
            if target.state is TargetState.PENDING:
                await self._run_target(build, target, paths, env)
                await self._save_or_log(build)
        return verdict(t.state for t in build.targets)

    async def _run_target(
        self, build: _Build, target: _Target, paths: BuildPaths, env: dict[str, str]
    ) -> None:
        timeout = target.spec.timeout_seconds
        if timeout is None or timeout <= 0:
            timeout = self._settings.default_timeout_seconds
        target.log_name = self._workspace.log_name(build.build_id, target.index)
        log = TargetLog(self._workspace.root / target.log_name, self._settings.log_limit_bytes)
        target.log = log
        target.started_at = time.monotonic()
        target.state = TargetState.RUNNING
        argv = self._sandbox.argv(target.spec.command, paths, network=target.spec.network)
        try:
            process = await TargetProcess.start(
                argv,
                cwd=paths.checkout,
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
        """End the build: durable first, then visible to ``status``."""
        now = time.monotonic()
        for target in build.targets:
            if not target.state.terminal:
                target.state = TargetState.CANCELLED
                target.ended_at = now if target.started_at is not None else None
        build.finished_at = time.time()
        await self._save_or_log(build, state=state, message=message)
        build.state, build.message = state, message
        self._ended.publish(
            BuildEnded(
                build_id=build.build_id,
                state=state,
                idempotency_key=build.spec.idempotency_key,
                trace_context=build.trace_context,
            )
        )
        _log.info("build %s %s%s", build.build_id, state.value, f": {message}" if message else "")
        self._finished.append(build.build_id)
        await self._evict()

    async def _evict(self) -> None:
        while len(self._finished) > self._settings.max_finished_builds:
            await self._forget(self._finished.popleft())

    async def _forget(self, build_id: str) -> None:
        build = self._builds.pop(build_id, None)
        if build is not None and self._by_key.get(build.spec.idempotency_key) == build_id:
            del self._by_key[build.spec.idempotency_key]
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._records.remove, build_id)
        with contextlib.suppress(OSError):
            await self._workspace.forget_logs(build_id)
