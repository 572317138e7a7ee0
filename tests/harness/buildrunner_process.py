"""The local runner as a real process, started the way ``stovepipe ext local-runner`` is."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.grpcutil import open_channel

START_DEADLINE_S = 60.0


class RunnerProcess:
    """One runner process on a work directory; ``start`` again after it died."""

    def __init__(
        self,
        *,
        source_control: str,
        work_dir: Path,
        stderr_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "stovepipe.extensions.buildrunner.local",
            "--listen",
            "127.0.0.1:0",
            "--source-control",
            source_control,
            "--work-dir",
            str(work_dir),
            "--kill-grace-seconds",
            "3",
            *args,
        ]
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._stderr_path = stderr_path
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with self._stderr_path.open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *self._argv, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=self._env
            )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), START_DEADLINE_S)
        assert line.startswith(b"listening on "), (line, self._stderr_path.read_text())
        self.address = line.decode().split()[-1]

    async def kill(self) -> None:
        """SIGKILL: the crash a restart must survive."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def terminate(self) -> int:
        """SIGTERM, and the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), START_DEADLINE_S)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[BuildRunnerClient]:
        channel = open_channel(self.address)
        try:
            yield BuildRunnerClient(channel, timeout_s=30.0)
        finally:
            await channel.close(None)


MakeRunner = Callable[..., RunnerProcess]
"""The ``make_runner`` fixture: keyword arguments ``work_dir``, ``args``, ``env``."""
