"""The public SourceControl contract suite, run against the fake and the git server.

The git server is reached through the client over real gRPC, reading a local
repository in place and mirroring a ``file://`` remote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sourcecontrol import FakeHarness, GitHarness
from stovepipe.extensions.sourcecontrol import SourceControlClient
from stovepipe.testing.contracts.sourcecontrol import Harness, SourceControlContract


class TestFake(SourceControlContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return FakeHarness()


class TestGitLocalPath(SourceControlContract):
    @pytest.fixture
    def harness(self, client: SourceControlClient, tmp_path: Path) -> Harness:
        return GitHarness(client, tmp_path, remote=False)


class TestGitRemote(SourceControlContract):
    @pytest.fixture
    def harness(self, client: SourceControlClient, tmp_path: Path) -> Harness:
        return GitHarness(client, tmp_path, remote=True)
