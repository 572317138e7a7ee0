"""Fixtures for the extension-authentication tests: git identity, certificates, servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.auth import GIT_TOKEN, PROMOTION_REF, RunnerFactory, make_repository
from harness.auth_pki import Pki, make_pki
from stovepipe.extensions.buildrunner.local import LocalRunnerServer
from stovepipe.extensions.sourcecontrol.git import (
    GitServer,
    Promotion,
    ServedRepositories,
    ServedRepository,
)
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.grpcutil import ServerSecurity


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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    make_repository(path)
    return path


@pytest.fixture
def served(repository: Path) -> ServedRepositories:
    return ServedRepositories(
        [ServedRepository(str(repository), frozenset({Promotion("main", PROMOTION_REF)}))]
    )


@pytest.fixture
async def git_server(tmp_path: Path, served: ServedRepositories) -> AsyncIterator[GitServer]:
    """The git server, requiring ``GIT_TOKEN``."""
    server = await serve_git(
        "127.0.0.1:0",
        served=served,
        cache_dir=tmp_path / "cache",
        security=ServerSecurity(token=GIT_TOKEN),
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def runners(git_server: GitServer, tmp_path: Path) -> AsyncIterator[RunnerFactory]:
    factory = RunnerFactory(git_server, tmp_path / "runner", [])
    yield factory
    await factory.close()


@pytest.fixture
async def runner_server(runners: RunnerFactory) -> LocalRunnerServer:
    """The local runner, requiring ``RUNNER_TOKEN`` and presenting ``GIT_TOKEN`` to git."""
    return await runners.start()
