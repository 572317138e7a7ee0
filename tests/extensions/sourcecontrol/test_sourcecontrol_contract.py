"""The public SourceControl contract suite, run against the fake and the git server.

The git server is reached through the client over real gRPC, reading a local
repository in place and mirroring a ``file://`` remote. Its repositories start
as copies of a history built once per session (building it is forty-odd git
commands; copying it is a few milliseconds).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from harness.sourcecontrol import FakeHarness, GitHarness, git_history_template
from stovepipe.extensions.sourcecontrol import SourceControlClient
from stovepipe.testing.contracts.sourcecontrol import Harness, History, SourceControlContract

Template = tuple[Path, History]


@pytest.fixture(scope="session")
async def local_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("sc-local-template")
    return root, await git_history_template(root, remote=False)


@pytest.fixture(scope="session")
async def remote_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("sc-remote-template")
    return root, await git_history_template(root, remote=True)


async def _adopted(
    template: Template, client: SourceControlClient, tmp_path: Path, *, remote: bool
) -> GitHarness:
    root, _ = template
    await asyncio.to_thread(shutil.copytree, root, tmp_path, dirs_exist_ok=True, symlinks=True)
    return await asyncio.to_thread(GitHarness, client, tmp_path, remote=remote, adopt=True)


class TestFake(SourceControlContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return FakeHarness()


class TestGitLocalPath(SourceControlContract):
    @pytest.fixture
    async def harness(
        self, client: SourceControlClient, tmp_path: Path, local_template: Template
    ) -> Harness:
        return await _adopted(local_template, client, tmp_path, remote=False)

    @pytest.fixture
    def history(self, harness: Harness, local_template: Template) -> History:
        return local_template[1]


class TestGitRemote(SourceControlContract):
    @pytest.fixture
    async def harness(
        self, client: SourceControlClient, tmp_path: Path, remote_template: Template
    ) -> Harness:
        return await _adopted(remote_template, client, tmp_path, remote=True)

    @pytest.fixture
    def history(self, harness: Harness, remote_template: Template) -> History:
        return remote_template[1]
