"""A restart of the runner process costs no verdict: builds survive SIGKILL and SIGTERM.

The runner runs as a real process on a work directory; the tests kill it
(SIGKILL, the crash) or stop it (SIGTERM) while a target runs, start a new
process on the same work directory and ask the new one, under the same build
id, how the build ended. A target "takes a moment" by printing a line and
sleeping a uniquely long time, so the tests can wait for it to run and check
that the crash took its processes down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import pytest

from harness.buildrunner import require_bwrap
from harness.buildrunner_process import MakeRunner, RunnerProcess
from harness.git_repos import WorkRepo
from harness.processes import processes_with, unique_sleep
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildRunnerClient,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.grpcutil import GrpcServer
from stovepipe.testing import until
from stovepipe.testing.contracts.buildrunner import wait_terminal


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


def _spec(repo: WorkRepo, head: str, *targets: TargetSpec, key: str = "") -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
        head_uri=head,
        targets=targets,
        idempotency_key=key,
    )


async def _wait_running(client: BuildRunnerClient, build_id: str, sleep: str) -> None:
    """Until the build's last target runs and its sleep is on the machine."""

    async def running() -> bool:
        report = await client.status(build_id)
        started = bool(processes_with(sleep, program="sleep"))
        return report.targets[-1].state is TargetState.RUNNING and started

    await until(running, what=f"{build_id} running its target")


async def _crash_while_running(runner: RunnerProcess, build_id: str, sleep: str) -> None:
    async with runner.client() as client:
        await _wait_running(client, build_id, sleep)
    await runner.kill()

    async def gone() -> bool:
        return processes_with(sleep) == []

    await until(gone, what="the crashed runner's sandbox going with it")


@pytest.mark.parametrize(
    ("exit_code", "state"), [(0, BuildState.SUCCEEDED), (3, BuildState.FAILED)]
)
async def test_a_build_a_crash_interrupted_runs_again_and_reports_its_true_result(
    make_runner: MakeRunner,
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    exit_code: int,
    state: BuildState,
) -> None:
    sleep = unique_sleep(2)
    head = double[0].mint(repo.commit({"a": "a"}))
    first = make_runner()
    await first.start()
    async with first.client() as client:
        build_id = await client.trigger(
            _spec(
                repo,
                head,
                TargetSpec(name="quick", command="test -f a"),
                TargetSpec(name="slow", command=f"echo started; {sleep}; exit {exit_code}"),
            )
        )
    await _crash_while_running(first, build_id, sleep)

    second = make_runner()
    await second.start()
    async with second.client() as client:
        report = await wait_terminal(client, build_id)
        log = await client.get_log(build_id, "slow")

    assert report.state is state
    assert [(t.name, t.state, t.exit_code) for t in report.targets] == [
        ("quick", TargetState.SUCCEEDED, 0),
        ("slow", TargetState.SUCCEEDED if exit_code == 0 else TargetState.FAILED, exit_code),
    ]
    assert report.targets[1].duration_seconds >= 2.0
    assert log.content == "started\n"
    assert "re-run 1 of 2" in report.message


async def test_a_finished_build_survives_a_restart_with_its_results_and_logs(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    head = double[0].mint(repo.commit({"a": "a"}))
    spec = _spec(
        repo,
        head,
        TargetSpec(name="pass", command="echo fine"),
        TargetSpec(name="fail", command="echo broken; exit 5"),
        key="request/demo/main/1#1#",
    )
    first = make_runner()
    await first.start()
    async with first.client() as client:
        build_id = await client.trigger(spec)
        before = await wait_terminal(client, build_id)
    await first.kill()

    second = make_runner()
    await second.start()
    async with second.client() as client:
        after = await client.status(build_id)
        logs = [(await client.get_log(build_id, name)).content for name in ("pass", "fail")]
        again = await client.trigger(dataclasses.replace(spec, targets=spec.targets[:1]))

    assert before.state is BuildState.FAILED
    assert after == before
    assert logs == ["fine\n", "broken\n"]
    assert again == build_id


async def test_a_build_that_keeps_crashing_its_runner_ends_errored_never_green(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    sleep = unique_sleep(120)
    head = double[0].mint(repo.commit({"a": "a"}))
    runner = make_runner()
    await runner.start()
    async with runner.client() as client:
        build_id = await client.trigger(_spec(repo, head, TargetSpec(name="t", command=sleep)))
    for _ in range(2):
        await _crash_while_running(runner, build_id, sleep)
        runner = make_runner()
        await runner.start()
    await _crash_while_running(runner, build_id, sleep)

    last = make_runner()
    await last.start()
    async with last.client() as client:
        report = await client.status(build_id)

    assert report.state is BuildState.ERRORED
    assert "crashed during each of the 3 runs" in report.message
    assert report.targets[0].state is TargetState.CANCELLED


async def test_a_build_sigterm_interrupted_runs_again_at_the_next_start(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    sleep = unique_sleep(2)
    head = double[0].mint(repo.commit({"a": "a"}))
    first = make_runner()
    await first.start()
    async with first.client() as client:
        build_id = await client.trigger(
            _spec(repo, head, TargetSpec(name="t", command=f"echo started; {sleep}"))
        )
        await _wait_running(client, build_id, sleep)
    assert await first.terminate() == 0
    assert processes_with(sleep) == []

    second = make_runner()
    await second.start()
    async with second.client() as client:
        report = await wait_terminal(client, build_id)

    assert report.state is BuildState.SUCCEEDED
    assert "stopped during an earlier run" in report.message


async def test_sandboxes_a_crash_left_running_are_killed_at_the_next_start(
    make_runner: MakeRunner, tmp_path: Path
) -> None:
    """bwrap arms its parent-death signal a moment after it starts; a sandbox started in
    that moment outlives a crashed runner, and the next runner kills it."""
    checkout = tmp_path / "work" / "builds" / "build-left" / "checkout"
    checkout.mkdir(parents=True)
    sleep = unique_sleep(120)
    argv = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]
    orphan = await asyncio.create_subprocess_exec(
        "bwrap", *argv, "--chdir", str(checkout), "--", *sleep.split(), start_new_session=True
    )

    async def sleeping() -> bool:
        return bool(processes_with(sleep, program="sleep"))

    try:
        await until(sleeping, what="the orphaned sandbox")
        runner = make_runner()
        await runner.start()
        await asyncio.wait_for(orphan.wait(), 30)
    finally:
        if orphan.returncode is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            await orphan.wait()

    assert processes_with(sleep) == []
