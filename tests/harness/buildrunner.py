"""Our implementations of the BuildRunner contract suite's ``Harness``.

A scenario is a list of ``Step``s, one per target: how the target ends, what
it prints, whether it hangs. ``LocalHarness`` commits a shell script per
target to a real repository and builds it with the real local runner over
gRPC; ``FakeHarness`` scripts the fake with the same outcomes. The suite
itself is public: :mod:`stovepipe.testing.contracts.buildrunner`.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.git_repos import WorkRepo
from harness.processes import process_alive
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildRunner,
    BuildSource,
    TargetState,
)
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner, Outcome, TargetScript
from stovepipe.extensions.buildrunner.local import RunnerSettings
from stovepipe.testing.contracts.buildrunner import Step

LOG_LIMIT = 4096
RUNNER_SETTINGS = RunnerSettings(
    log_limit_bytes=LOG_LIMIT, kill_grace_seconds=3.0, default_timeout_seconds=120.0, sandbox=False
)
"""How the tests' local runners run: a small log cap the suite can write past. The
contract and local suites check the process model: their targets record runs and pids
outside the checkout, which the sandbox forbids, so they run unsandboxed;
``test_buildrunner_sandbox.py`` runs the same kinds of target inside the sandbox."""


def require_bwrap() -> None:
    """Sandbox tests fail, never skip, on a machine without bubblewrap."""
    assert shutil.which("bwrap"), (
        "bwrap not found: the sandbox tests need bubblewrap (apt-get install bubblewrap)"
    )


class FakeHarness:
    log_limit_bytes = LOG_LIMIT

    def __init__(self) -> None:
        self.fake = FakeBuildRunner(log_limit_bytes=LOG_LIMIT)
        self.runner: BuildRunner = self.fake
        self.source = BuildSource(queue="demo/main", repository="fake://demo", ref="main")
        self._numbers = itertools.count(1)
        self._previous = ""

    async def commit(self, steps: Sequence[Step], *, touching: Sequence[str] = ()) -> str:
        uri = f"fake-commit-{next(self._numbers)}"
        self.fake.script(
            uri,
            Outcome(
                targets={
                    s.name: TargetScript(
                        state=TargetState.SUCCEEDED if s.exit_code == 0 else TargetState.FAILED,
                        exit_code=s.exit_code,
                        log=s.output,
                        hangs=s.hangs,
                    )
                    for s in steps
                }
            ),
        )
        if self._previous:
            self.fake.set_changed_files(self._previous, uri, touching)
        self._previous = uri
        return uri

    def dangling_head(self) -> str:
        uri = f"fake-dangling-{next(self._numbers)}"
        self.fake.script(uri, Outcome.errored("checkout failed: revision not found"))
        return uri

    def runs(self, target: str) -> int:
        return sum(1 for _, name in self.fake.started if name == target)

    def alive(self, target: str) -> bool:
        return any(name == target for _, name in self.fake.running())

    async def leftovers(self) -> list[str]:
        return [f"{build}/{target}" for build, target in self.fake.running()]


class LocalHarness:
    log_limit_bytes = LOG_LIMIT

    def __init__(
        self,
        runner: BuildRunner,
        repo: WorkRepo,
        double: SourceControlDouble,
        work_dir: Path,
        state_dir: Path,
    ) -> None:
        self.runner = runner
        self.repo = repo
        self.double = double
        self.work_dir = work_dir
        self.state_dir = state_dir
        self.source = BuildSource(queue="demo/main", repository=str(repo.path), ref="main")
        state_dir.mkdir(parents=True, exist_ok=True)

    def _script(self, step: Step) -> str:
        lines = [f"echo run >> '{self.state_dir}/{step.name}.runs'"]
        if step.output:
            lines.append(f"cat 'ci/{step.name}.out'")
        if step.hangs:
            lines += [
                "sleep 60 &",
                f"echo $$ $! > '{self.state_dir}/{step.name}.pids'",
                "wait",
            ]
        lines.append(f"exit {step.exit_code}")
        return "\n".join(lines) + "\n"

    async def commit(self, steps: Sequence[Step], *, touching: Sequence[str] = ()) -> str:
        files = self.repo.touch(*touching)
        for step in steps:
            files[f"ci/{step.name}.sh"] = self._script(step)
            files[f"ci/{step.name}.out"] = step.output
        return self.double.mint(self.repo.commit(files))

    def dangling_head(self) -> str:
        return self.double.mint("0123456789abcdef0123456789abcdef01234567")

    def runs(self, target: str) -> int:
        path = self.state_dir / f"{target}.runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def pids(self, target: str) -> list[int]:
        path = self.state_dir / f"{target}.pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def alive(self, target: str) -> bool:
        return any(process_alive(pid) for pid in self.pids(target))

    async def leftovers(self) -> list[str]:
        held = [str(p) for p in (self.work_dir / "builds").glob("*")]
        for mirror in (self.work_dir / "mirrors").glob("*.git"):
            held += [str(p) for p in (mirror / "worktrees").glob("*")]
        return held


def read_text(path: Path) -> str:
    """Small files the tests inspect; a sync helper keeps blocking I/O out of coroutines."""
    return path.read_text()


def listing(path: Path) -> list[str]:
    """Names under ``path`` (empty when it does not exist)."""
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def tree_size(path: Path) -> int:
    """Bytes held by the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
