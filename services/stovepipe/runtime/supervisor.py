"""Run a set of child processes as one unit: start in order, watch, stop in reverse.

``stovepipe up`` uses it to run extensions, workers and the API as separate
processes, the same shape as a production deployment. Each child writes to
its own log file; a child that exits unexpectedly brings the unit down, so a
half-running stack never looks healthy — except a child that exits with
``EXIT_RESTART`` (75), which asks to be started again (a worker that found its
broker emptied does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stovepipe.runtime.processes import terminate

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]


@dataclass
class ChildSpec:
    """What to run: a name for humans, argv, extra environment, where to log."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    address: str = ""
    ready: ReadyCheck | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid


class ChildExited(RuntimeError):
    """A supervised child stopped on its own; the message names it and its log."""


class Supervisor:
    def __init__(self, stop_timeout_s: float = 15.0) -> None:
        self._children: list[Child] = []
        self._stop_timeout_s = stop_timeout_s

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    async def start(self, spec: ChildSpec, ready_timeout_s: float = 60.0) -> Child:
        """Start ``spec`` and wait for its readiness check (if any) with a deadline."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = spec.log_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **spec.env},
                start_new_session=True,
            )
        finally:
            log_file.close()
        child = Child(spec, process)
        self._children.append(child)
        if spec.ready is not None:
            await self._wait_ready(child, ready_timeout_s)
        return child

    async def _wait_ready(self, child: Child, timeout_s: float) -> None:
        assert child.spec.ready is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if child.process.returncode is not None:
                raise ChildExited(self._exit_message(child))
            with contextlib.suppress(Exception):
                if await child.spec.ready():
                    return
            await asyncio.sleep(0.1)
        raise TimeoutError(
            f"{child.spec.name} not ready after {timeout_s:.0f}s; see {child.spec.log_path}"
        )

    async def respawn(self, child: Child) -> Child:
        """Start an exited child again in its place (same spec, same log file)."""
        index = self._children.index(child)
        self._children.pop(index)
        fresh = await self.start(child.spec)
        self._children.remove(fresh)
        self._children.insert(index, fresh)
        return fresh

    async def wait_any_exit(self) -> Child:
        """Return the first child that exits (normally never, while the stack runs)."""
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self._children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for fut in waits:
                fut.cancel()

    async def stop(self) -> None:
        """SIGTERM every child in reverse start order; SIGKILL what outlives the bound."""
        for child in reversed(self._children):
            await self._stop_child(child)
        self._children.clear()

    async def _stop_child(self, child: Child) -> None:
        if child.process.returncode is not None:
            return
        if not await terminate(child.process, self._stop_timeout_s):
            log.warning(
                "%s ignored SIGTERM for %.0fs; killed", child.spec.name, self._stop_timeout_s
            )

    @staticmethod
    def _exit_message(child: Child) -> str:
        tail = ""
        with contextlib.suppress(OSError):
            lines = child.spec.log_path.read_text(errors="replace").splitlines()[-15:]
            tail = "\n".join(f"    {line}" for line in lines)
        return (
            f"{child.spec.name} exited with code {child.process.returncode}; "
            f"log {child.spec.log_path}:\n{tail}"
        )

    def describe_exit(self, child: Child) -> str:
        return self._exit_message(child)
