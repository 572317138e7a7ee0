"""Run a set of child processes as one unit: start, keep running, stop within one bound.

``stovepipe up`` uses it to run extensions, workers and the API as separate
processes, the same shape as a production deployment. Each child is the leader
of its own process group and writes to its own log file (mode 0600).

- **Start** (:meth:`Supervisor.start_all`): a group of children starts at once,
  and the call returns when every one of them passes its :data:`ReadyCheck`.
  A child that exits or stays unready past the deadline fails the start
  (:class:`ChildExited`, ``TimeoutError``): a stack that never came up is
  reported, not retried.
- **Keep running** (:meth:`Supervisor.supervise`): any child that exits, with
  any code or signal, is started again after an exponential backoff
  (:class:`RestartPolicy`), and is waited for until it is ready. Whatever its
  dead process left in its group (a build of a killed runner) is killed first.
  A child that would need more than ``max_restarts`` restarts within
  ``window_s`` is crash-looping: ``supervise`` raises :class:`CrashLoop`, which
  names it, counts its restarts and carries the tail of its log.
- **Stop** (:meth:`Supervisor.stop`): one grace period for the whole unit.
  SIGTERM goes at once to every child in reverse start order (the API before
  the workers, so no new work comes in), except the children others depend on
  (``stop_last``, the extensions): they get theirs when the rest have exited,
  or ``last_reserve_s`` before the grace period ends. Whatever still runs when
  it ends is killed with its process group. A stop therefore takes at most the
  grace period plus the time to reap killed processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stovepipe.redaction import redact
from stovepipe.runtime.broker_watch import EXIT_RESTART

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]
"""True once the child does its job; exceptions count as not yet."""

Report = Callable[[str], None]

_READY_POLL_S = 0.25
_KEEPERS_STOP_S = 2.0
_REAP_S = 5.0
_LOG_TAIL_LINES = 20


@dataclass
class ChildSpec:
    """What to run: a name for humans, argv, extra environment, where to log.

    ``address`` is shown to people; ``ready`` says when the child is ready;
    ``stop_last`` marks a child the others call (an extension server): it is
    asked to stop only after the others have gone.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    address: str = ""
    ready: ReadyCheck | None = None
    stop_last: bool = False
    metrics: str = ""
    """Where the child serves Prometheus ``/metrics`` (``host:port``), if it does."""


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that exited, and when to give up on it.

    The n-th restart within ``window_s`` waits ``backoff_initial_s * 2**(n-1)``
    (at most ``backoff_max_s``); needing more than ``max_restarts`` within the
    window is a crash loop. A restarted child must be ready within
    ``ready_timeout_s``, or it is killed, which counts as one more exit.
    """

    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_restarts: int = 5
    window_s: float = 60.0
    ready_timeout_s: float = 60.0

    def backoff(self, restart: int) -> float:
        """The pause before the ``restart``-th restart (1-based) within the window."""
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, restart - 1)))


class ChildExited(RuntimeError):
    """A child exited while it was being started; the message names it and its log."""


class CrashLoop(RuntimeError):
    """A child exited too often within the restart window; the supervisor gave up."""

    def __init__(self, name: str, restarts: int, window_s: float, last_exit: str) -> None:
        super().__init__(
            f"{name} is crash-looping: it was restarted {restarts} times within "
            f"{window_s:.0f}s and exited again; giving up.\n{last_exit}"
        )
        self.name = name
        self.restarts = restarts


def describe_exit(code: int | None) -> str:
    """How a process ended, in words (``None``: it has not)."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == EXIT_RESTART:
        return f"exited with code {code} (asks to be started afresh)"
    return f"exited with code {code}"


class Supervisor:
    """See the module docstring. ``report`` receives every restart and kill, for people.

    One run per instance: once :meth:`stop` has begun, nothing is restarted or
    waited for any more.
    """

    def __init__(
        self,
        stop_timeout_s: float = 15.0,
        restart: RestartPolicy | None = None,
        *,
        report: Report | None = None,
        base_env: Mapping[str, str] | None = None,
        last_reserve_s: float | None = None,
    ) -> None:
        self._children: list[Child] = []
        self._stop_timeout_s = stop_timeout_s
        self._policy = restart or RestartPolicy()
        self._report = report or log.warning
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._last_reserve_s = (
            min(5.0, stop_timeout_s / 3) if last_reserve_s is None else last_reserve_s
        )
        self._stopping = asyncio.Event()
        self._exits: dict[str, deque[float]] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self.restarts: Counter[str] = Counter()
        """Restarts per child name, since the supervisor was made."""

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    # Start

    async def start_all(
        self, specs: Iterable[ChildSpec], ready_timeout_s: float = 60.0
    ) -> list[Child]:
        """Start every spec at once; return when all are ready.

        Raises :class:`ChildExited` or ``TimeoutError`` for the first that fails;
        the children stay registered, so :meth:`stop` ends them.
        """
        children = []
        for spec in specs:
            child = await self._spawn(spec)
            self._children.append(child)
            children.append(child)
        try:
            async with asyncio.TaskGroup() as group:
                for child in children:
                    group.create_task(self._wait_ready(child, ready_timeout_s))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return children

    async def _spawn(self, spec: ChildSpec) -> Child:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
                env={**self._base_env, **spec.env},
                start_new_session=True,
            )
        finally:
            os.close(fd)
        return Child(spec, process)

    async def _wait_ready(self, child: Child, timeout_s: float) -> bool:
        """True once ``child`` is ready; False when a stop began first.

        Raises :class:`ChildExited` when it exits, ``TimeoutError`` at the deadline.
        """
        check = child.spec.ready
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if child.process.returncode is not None:
                raise ChildExited(self._exit_message(child))
            if check is None:
                return True
            with contextlib.suppress(Exception):
                if await check():
                    return True
            if await self._pause(_READY_POLL_S):
                return False
        raise TimeoutError(
            f"{child.spec.name} not ready after {timeout_s:.0f}s; see {child.spec.log_path}"
        )

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until a stop begins; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    # Keep running

    async def supervise(self) -> None:
        """Restart children that exit until :meth:`stop` begins, then return.

        Raises :class:`CrashLoop` when a child exits too often; no other child
        is restarted after that, and the caller is expected to :meth:`stop`.
        """
        self._keepers = [
            asyncio.create_task(self._keep(child), name=f"keep {child.spec.name}")
            for child in self._children
        ]
        try:
            done, _ = await asyncio.wait(self._keepers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and (failure := task.exception()) is not None:
                    raise failure
        finally:
            self._stopping.set()
            await self._end_keepers()

    async def _keep(self, child: Child) -> None:
        current: Child | None = child
        while current is not None:
            exited = asyncio.ensure_future(current.process.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            stopping.cancel()
            if self._stopping.is_set():
                return
            current = await self._restart(current)

    async def _restart(self, child: Child) -> Child | None:
        """Start ``child`` again after its backoff; None when a stop began meanwhile."""
        name = child.spec.name
        _kill_group(child)
        now = asyncio.get_running_loop().time()
        exits = self._exits.setdefault(name, deque())
        exits.append(now)
        while exits and exits[0] < now - self._policy.window_s:
            exits.popleft()
        if len(exits) > self._policy.max_restarts:
            raise CrashLoop(name, len(exits) - 1, self._policy.window_s, self._exit_message(child))
        delay = self._policy.backoff(len(exits))
        self._report(
            f"{name} (pid {child.pid}) {describe_exit(child.process.returncode)}; "
            f"restarting it in {delay:.1f}s (restart {len(exits)} of at most "
            f"{self._policy.max_restarts} within {self._policy.window_s:.0f}s)"
        )
        if await self._pause(delay):
            return None
        fresh = await self._spawn(child.spec)
        self._children[self._children.index(child)] = fresh
        self.restarts[name] += 1
        try:
            if not await self._wait_ready(fresh, self._policy.ready_timeout_s):
                return None
        except ChildExited:
            return fresh  # its exit is counted on the next turn
        except TimeoutError as exc:
            self._report(f"{exc}; killing it")
            _kill_group(fresh)
            await fresh.process.wait()
            return fresh
        self._report(f"{name} restarted (pid {fresh.pid}) and ready")
        return fresh

    async def _end_keepers(self) -> None:
        keepers, self._keepers = self._keepers, []
        if not keepers:
            return
        _, late = await asyncio.wait(keepers, timeout=_KEEPERS_STOP_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)

    # Stop

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop every child within one grace period (see the module docstring).

        ``grace_s`` shortens it: a stack that failed to start has nothing in flight
        to drain, so its children need not be given the full period."""
        self._stopping.set()
        await self._end_keepers()
        loop = asyncio.get_running_loop()
        grace_s = self._stop_timeout_s if grace_s is None else grace_s
        deadline = loop.time() + grace_s
        running = [c for c in reversed(self._children) if c.process.returncode is None]
        first = [c for c in running if not c.spec.stop_last]
        last = [c for c in running if c.spec.stop_last]
        for child in first:
            _terminate(child)
        if last:
            await _wait_exited(first, deadline - self._last_reserve_s)
            for child in last:
                _terminate(child)
        await _wait_exited(running, deadline)
        late = [f"{c.spec.name} (pid {c.pid})" for c in running if c.process.returncode is None]
        if late:
            self._report(
                f"still running {grace_s:g}s after the stop began, so killed: {', '.join(late)}"
            )
        for child in self._children:
            _kill_group(child)  # also what exited children left behind
        await _wait_exited(running, loop.time() + _REAP_S)
        self._children.clear()

    @staticmethod
    def _exit_message(child: Child) -> str:
        """The child's exit and the tail of its log, credentials masked."""
        tail = ""
        with contextlib.suppress(OSError):
            lines = child.spec.log_path.read_text(errors="replace").splitlines()
            tail = "\n".join(f"    {redact(line)}" for line in lines[-_LOG_TAIL_LINES:])
        return (
            f"{child.spec.name} {describe_exit(child.process.returncode)}; "
            f"last lines of {child.spec.log_path}:\n{tail}"
        )


def _terminate(child: Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(signal.SIGTERM)


def _kill_group(child: Child) -> None:
    """SIGKILL the child's process group: the child if alive, and whatever it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


async def _wait_exited(children: Sequence[Child], until: float) -> None:
    """Return when every child has exited or at loop time ``until``, whichever is first."""
    waits = [asyncio.ensure_future(c.process.wait()) for c in children]
    if not waits:
        return
    timeout = max(0.0, until - asyncio.get_running_loop().time())
    try:
        await asyncio.wait(waits, timeout=timeout)
    finally:
        for wait in waits:
            wait.cancel()
