"""The public BuildRunner contract suite, run against the fake and the real local runner.

The local runner is reached through the client over real gRPC and builds
commits of a real repository that a SourceControl double describes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.buildrunner import FakeHarness, LocalHarness
from harness.git_repos import WorkRepo
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.grpcutil import GrpcServer
from stovepipe.testing.contracts.buildrunner import BuildRunnerContract, Harness


class TestFake(BuildRunnerContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return FakeHarness()


class TestLocalRunner(BuildRunnerContract):
    @pytest.fixture
    def harness(
        self,
        client: BuildRunnerClient,
        repo: WorkRepo,
        double: tuple[SourceControlDouble, GrpcServer],
        tmp_path: Path,
    ) -> Harness:
        return LocalHarness(client, repo, double[0], tmp_path / "work", tmp_path / "state")
