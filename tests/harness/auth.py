"""Shared pieces of the extension-authentication tests: tokens, a repository, calls."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stovepipe.extensions.buildrunner import (
    BuildReport,
    BuildRunnerClient,
    BuildSource,
    TargetSpec,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.local import LocalRunnerServer, RunnerSettings
from stovepipe.extensions.buildrunner.local import serve as serve_runner
from stovepipe.extensions.sourcecontrol import QueueSource
from stovepipe.extensions.sourcecontrol.git import GitServer
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity

GIT_TOKEN = "git-token-0123456789abcdef0123456789"
RUNNER_TOKEN = "runner-token-0123456789abcdef01234567"
WRONG_TOKEN = "not-the-token-0123456789abcdef012345"
QUEUE = "demo/main"
PROMOTION_REF = "verified-main"


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip()


def make_repository(path: Path) -> str:
    """A repository with one commit on ``main``; its revision."""
    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    (path / "a.txt").write_text("a\n")
    git("add", "a.txt", cwd=path)
    git("commit", "--quiet", "-m", "first", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def source_of(repository: Path) -> QueueSource:
    return QueueSource(QUEUE, str(repository), "main")


def trigger_spec(repository: Path, head_uri: str, command: str) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue=QUEUE, repository=str(repository), ref="main"),
        head_uri=head_uri,
        targets=(TargetSpec(name="t", command=command),),
    )


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def finished(client: BuildRunnerClient, build_id: str, deadline_s: float = 60) -> BuildReport:
    """The build's report once it is terminal (polled against a deadline)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while True:
        report = await client.status(build_id)
        if report.state.terminal:
            return report
        if loop.time() > give_up:
            raise AssertionError(f"build {build_id} still {report.state} after {deadline_s}s")
        await asyncio.sleep(0.05)


@dataclass
class RunnerFactory:
    """Starts local runners against ``git_server``; ``close`` stops them all."""

    git_server: GitServer
    work: Path
    started: list[LocalRunnerServer]

    async def start(self, source_control_token: str | None = GIT_TOKEN) -> LocalRunnerServer:
        """Unsandboxed, so a target can leave a marker outside its checkout: the marker
        is how these tests see whether a build ran (the sandbox has tests of its own)."""
        server = await serve_runner(
            "127.0.0.1:0",
            source_control=self.git_server.address,
            work_dir=self.work / str(len(self.started)),
            settings=RunnerSettings(sandbox=False),
            security=ServerSecurity(token=RUNNER_TOKEN),
            source_control_security=ChannelSecurity(token=source_control_token),
        )
        self.started.append(server)
        return server

    async def close(self) -> None:
        for server in self.started:
            await server.stop(0)
