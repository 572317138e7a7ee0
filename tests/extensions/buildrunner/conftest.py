"""Fixtures for the BuildRunner suites: git identity, a repository, servers, clients and
runner processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from harness.buildrunner import RUNNER_SETTINGS
from harness.buildrunner_process import MakeRunner, RunnerProcess
from harness.git_repos import WorkRepo
from harness.sc_double import SourceControlDouble, serve_double
from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.extensions.buildrunner.local import LocalRunnerServer, serve
from stovepipe.grpcutil import GrpcServer
from stovepipe.testing.contracts import build_runner_client


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
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "repo")


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
    async with build_runner_client(local_server.address) as client:
        yield client


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
