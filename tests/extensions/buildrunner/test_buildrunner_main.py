"""``main()`` as a real process: it starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.buildrunner import listing, require_bwrap
from harness.buildrunner_process import MakeRunner
from harness.git_repos import WorkRepo
from harness.processes import processes_with, unique_sleep
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.testing import until
from stovepipe.testing.contracts.buildrunner import wait_terminal


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


def _spec(repo: WorkRepo, head: str, command: str) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
        head_uri=head,
        targets=(TargetSpec(name="t", command=command),),
    )


async def test_main_serves_until_sigterm_then_exits_zero(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    runner = make_runner()
    await runner.start()
    channel = open_channel(runner.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(
            health_pb2.HealthCheckRequest(service="stovepipe.ext.v1.BuildRunnerService")
        )
    finally:
        await channel.close(None)
    head = double[0].mint(repo.commit({"a": "a"}))
    async with runner.client() as client:
        report = await wait_terminal(client, await client.trigger(_spec(repo, head, "test -f a")))

    code = await runner.terminate()

    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert report.state is BuildState.SUCCEEDED
    assert code == 0


async def test_sigterm_stops_running_builds_and_removes_their_checkouts(
    make_runner: MakeRunner,
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    tmp_path: Path,
) -> None:
    runner = make_runner()
    await runner.start()
    sleep = unique_sleep(60)
    head = double[0].mint(repo.commit({"a": "a"}))
    async with runner.client() as client:
        build_id = await client.trigger(_spec(repo, head, f"exec {sleep}"))

        async def started() -> bool:
            report = await client.status(build_id)
            running = bool(processes_with(sleep, program="sleep"))
            return report.targets[0].state is TargetState.RUNNING and running

        await until(started, what="target start")

    code = await runner.terminate()

    assert code == 0
    assert processes_with(sleep) == []
    assert listing(tmp_path / "work" / "builds") == []


def test_main_refuses_to_start_without_a_source_control_address(tmp_path: Path) -> None:
    from stovepipe.extensions.buildrunner.local import main

    with pytest.raises(SystemExit) as exited:
        main(["--work-dir", str(tmp_path)])
    assert exited.value.code == 2
