"""One vocabulary for the contract suite, two ways to make it true.

A scenario is a list of ``Step``s, one per target: how the target ends, what
it prints, whether it hangs. ``LocalHarness`` commits a shell script per
target to a real repository and builds it with the real local runner over
gRPC; ``FakeHarness`` scripts the fake with the same outcomes. The tests only
speak the vocabulary, so each asserts the same behaviour of both.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from buildrunner_git import GitRepo, process_alive
from buildrunner_sc_double import SourceControlDouble

from stovepipe.extensions.buildrunner import (
    BuildReport,
    BuildRunner,
    BuildSource,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner, Outcome, TargetScript

LOG_LIMIT = 4096


@dataclass(frozen=True)
class Step:
    name: str
    exit_code: int = 0
    output: str = ""
    hangs: bool = False
    paths: tuple[str, ...] = ()
    timeout_seconds: float | None = None


def targets(steps: Sequence[Step]) -> tuple[TargetSpec, ...]:
    return tuple(
        TargetSpec(
            name=s.name,
            command=f"sh ci/{s.name}.sh",
            paths=s.paths,
            timeout_seconds=s.timeout_seconds,
        )
        for s in steps
    )


class Harness(Protocol):
    runner: BuildRunner
    source: BuildSource

    async def commit(self, steps: Sequence[Step], *, touching: Sequence[str] = ()) -> str:
        """A new head whose targets behave as ``steps``; ``touching`` are the files it changes."""
        ...

    def dangling_head(self) -> str:
        """A head SourceControl knows but whose revision cannot be checked out."""
        ...

    def runs(self, target: str) -> int:
        """How many times a target of that name started."""
        ...

    def alive(self, target: str) -> bool:
        """Whether work started by that target still runs."""
        ...

    async def leftovers(self) -> list[str]:
        """Resources still held by builds (checkouts, worktree records, hanging work)."""
        ...


def trigger_spec(
    harness: Harness,
    head_uri: str,
    steps: Sequence[Step],
    *,
    base_uri: str = "",
    key: str = "",
) -> TriggerSpec:
    return TriggerSpec(
        source=harness.source,
        base_uri=base_uri,
        head_uri=head_uri,
        targets=targets(steps),
        idempotency_key=key,
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], *, deadline_s: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; fail the test with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(0.02)


async def wait_terminal(
    runner: BuildRunner, build_id: str, deadline_s: float = 60.0
) -> BuildReport:
    reports: list[BuildReport] = []

    async def terminal() -> bool:
        reports.append(await runner.status(build_id))
        return reports[-1].state.terminal

    await eventually(terminal, deadline_s=deadline_s, what=f"{build_id} ending")
    return reports[-1]


class FakeHarness:
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
    def __init__(
        self,
        runner: BuildRunner,
        repo: GitRepo,
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
