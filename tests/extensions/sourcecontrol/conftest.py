"""Fixtures for the SourceControl suites: git identity, the git server and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.git_repos import AUTHOR_EMAIL, AUTHOR_NAME
from harness.sourcecontrol import promoting
from stovepipe.extensions.sourcecontrol import SourceControlClient
from stovepipe.extensions.sourcecontrol.git import ServedRepositories, ServedRepository, serve
from stovepipe.grpcutil import GrpcServer
from stovepipe.testing.contracts import source_control_client


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commits work without a user's git config, and no user config leaks in."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", AUTHOR_NAME)
        monkeypatch.setenv(f"GIT_{role}_EMAIL", AUTHOR_EMAIL)


@pytest.fixture
def served(tmp_path: Path) -> list[ServedRepository]:
    """What the git server serves: the repositories ``GitHarness`` makes, local and remote
    (tests of the git server alone add their own)."""
    return [
        *(promoting(str(tmp_path / name)) for name in ("calc", "other", "gone")),
        *(promoting(f"file://{tmp_path / name}.git") for name in ("calc", "other", "gone")),
    ]


@pytest.fixture
async def git_server(tmp_path: Path, served: list[ServedRepository]) -> AsyncIterator[GrpcServer]:
    server = await serve(
        "127.0.0.1:0", served=ServedRepositories(served), cache_dir=tmp_path / "cache"
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def client(git_server: GrpcServer) -> AsyncIterator[SourceControlClient]:
    async with source_control_client(git_server.address) as client:
        yield client
