"""Fixtures for the BuildRunner suites: git identity, repositories, servers, harnesses."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from buildrunner_git import GitRepo
from buildrunner_harness import LOG_LIMIT, FakeHarness, Harness, LocalHarness
from buildrunner_process import RunnerProcess
from buildrunner_sc_double import SourceControlDouble, serve_double

from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.extensions.buildrunner.local import LocalRunnerServer, RunnerSettings, serve
from stovepipe.grpcutil import GrpcServer, open_channel

RUNNER_SETTINGS = RunnerSettings(
    log_limit_bytes=LOG_LIMIT, kill_grace_seconds=3.0, default_timeout_seconds=120.0, sandbox=False
)
"""The contract and local suites check the process model: their targets record runs and
pids outside the checkout, which the sandbox forbids, so they run unsandboxed.
``test_buildrunner_sandbox.py`` runs the same kinds of target inside the sandbox."""


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commits work without a user's git config, and no user config leaks in."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Stovepipe Tests")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "tests@stovepipe.invalid")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
async def double() -> AsyncIterator[tuple[SourceControlDouble, GrpcServer]]:
    servicer = SourceControlDouble()
    server = await serve_double(servicer)
    yield servicer, server
    await server.stop(0)


@pytest.fixture
async def local_server(
    double: tuple[SourceControlDouble, GrpcServer], tmp_path: Path
) -> AsyncIterator[LocalRunnerServer]:
    server = await serve(
        "127.0.0.1:0",
        source_control=double[1].address,
        work_dir=tmp_path / "work",
        settings=RUNNER_SETTINGS,
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def client(local_server: LocalRunnerServer) -> AsyncIterator[BuildRunnerClient]:
    channel = open_channel(local_server.address)
    yield BuildRunnerClient(channel, timeout_s=30.0)
    await channel.close(None)


@pytest.fixture(params=["fake", "local"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "fake":
        return FakeHarness()
    double: tuple[SourceControlDouble, GrpcServer] = request.getfixturevalue("double")
    client: BuildRunnerClient = request.getfixturevalue("client")
    return LocalHarness(
        client,
        request.getfixturevalue("repo"),
        double[0],
        tmp_path / "work",
        tmp_path / "state",
    )


def require_bwrap() -> None:
    """Sandbox tests fail, never skip, on a machine without bubblewrap."""
    assert shutil.which("bwrap"), (
        "bwrap not found: the sandbox tests need bubblewrap (apt-get install bubblewrap)"
    )


MakeRunner = Callable[..., RunnerProcess]


@pytest.fixture
async def make_runner(
    double: tuple[SourceControlDouble, GrpcServer], tmp_path: Path
) -> AsyncIterator[MakeRunner]:
    """Runner processes on a work directory (``tmp_path/work`` unless told), killed at
    the end; each is returned unstarted."""
    started: list[RunnerProcess] = []

    def make(
        *,
        work_dir: Path | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> RunnerProcess:
        runner = RunnerProcess(
            source_control=double[1].address,
            work_dir=work_dir or tmp_path / "work",
            stderr_path=tmp_path / f"runner-{len(started)}.stderr",
            args=args,
            env=env,
        )
        started.append(runner)
        return runner

    yield make
    for runner in started:
        await runner.close()
