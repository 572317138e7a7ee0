"""One target as one process group: start, wait with a timeout, stop.

Each target runs as the process its sandbox gives (``sandbox.py``: bwrap around
``/bin/sh -c <command>``, or the shell alone) in a new session, so it and every
process it starts share a process group we can signal as a whole; the
processes inside a bwrap sandbox stay in that group, since bwrap starts no
session of its own. Stopping is
SIGTERM to the group, up to ``kill_grace`` seconds for the group to go, then
SIGKILL. A target that exits but leaves processes behind has them stopped the
same way, so nothing a build started outlives it.

stdout and stderr share one pipe whose data goes straight into the target's
log. The exit of the shell is observed on its own, not through
``asyncio.subprocess.Process.wait`` (which, before Python 3.12, also waits for
every holder of the pipe to close it, forever if a background process keeps
it). After the group is gone the pipe gets a bounded wait, in case a process
that left the group still holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from stovepipe.extensions.buildrunner.local.logs import TargetLog
from stovepipe.extensions.buildrunner.model import TargetState

_DRAIN_SECONDS = 5.0
_POLL_SECONDS = 0.02
_PROC = Path("/proc")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not (_PROC / "self" / "stat").exists():
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class _OutputToLog(asyncio.SubprocessProtocol):
    def __init__(self, log: TargetLog) -> None:
        self._log = log
        self.exited = asyncio.Event()
        self.output_closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self._log.write(bytes(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.output_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


class TargetProcess:
    """A started target; ``finish`` waits for it, ``stop`` ends it early."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _OutputToLog,
        log: TargetLog,
        kill_grace: float,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._log = log
        self._kill_grace = kill_grace
        self.pid: int = transport.get_pid()

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log: TargetLog,
        kill_grace: float,
    ) -> TargetProcess:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _OutputToLog(log),
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        return cls(transport, protocol, log, kill_grace)

    def _exit_code(self) -> int | None:
        return self._transport.get_returncode()

    async def finish(self, limit_s: float) -> tuple[TargetState, int]:
        """Wait up to ``limit_s`` seconds: SUCCEEDED/FAILED by exit code, or TIMED_OUT."""
        try:
            await asyncio.wait_for(self._protocol.exited.wait(), limit_s)
        except TimeoutError:
            return TargetState.TIMED_OUT, await self.stop()
        code = await self.stop()
        return (TargetState.SUCCEEDED if code == 0 else TargetState.FAILED), code

    async def stop(self) -> int:
        """Stop whatever of the group still runs (SIGTERM, grace, SIGKILL), close the
        log; the shell's exit code (negative: the signal that ended it)."""
        try:
            await self._stop_group()
            await self._protocol.exited.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._protocol.output_closed.wait(), _DRAIN_SECONDS)
        finally:
            self._transport.close()
            self._log.close()
        code = self._exit_code()
        assert code is not None
        return code

    def _running(self) -> bool:
        return not self._protocol.exited.is_set() or group_alive(self.pid)

    async def _stop_group(self) -> None:
        if not self._running():
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline and self._running():
            if self._protocol.exited.is_set():
                await asyncio.sleep(_POLL_SECONDS)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._protocol.exited.wait(), _POLL_SECONDS)
        if self._running():
            _signal_group(self.pid, signal.SIGKILL)
