"""Run the git CLI as an asyncio subprocess, never blocking the event loop.

Each git runs in its own process group so that a timeout or a cancelled call
(a client that stopped waiting) kills git and whatever it started (ssh, a
credential helper, a remote helper) instead of leaving them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stovepipe.extensions.sourcecontrol.errors import RepositoryUnusable

GIT = "git"

_LOCATING_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "LANGUAGE",
)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def lines(self) -> list[str]:
        return self.stdout.decode("utf-8", "replace").splitlines()


class GitTimeout(Exception):
    """A git command outlived its own limit (the caller knows what it was doing)."""


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment made safe for unattended git.

    English messages (errors are classified by their text), no prompt for a
    password or a host key (it would hang until the deadline), and no
    inherited variable that points git at some other repository.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LOCATING_VARIABLES}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never")
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    env.update(extra or {})
    return env


async def run_git(
    args: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> GitResult:
    """Run ``git <args>``; its exit code and output. ``GitTimeout`` past ``timeout_s``."""
    try:
        process = await asyncio.create_subprocess_exec(
            GIT,
            *args,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_environment(env),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise RepositoryUnusable(
            "the git executable was not found on this server's PATH; install git"
        ) from exc
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate(stdin)
    except TimeoutError as exc:
        await _kill(process)
        raise GitTimeout(f"git ran longer than {timeout_s:.0f}s") from exc
    except BaseException:
        await _kill(process)
        raise
    assert process.returncode is not None
    return GitResult(process.returncode, stdout, stderr.decode("utf-8", "replace"))


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await asyncio.shield(process.wait())
