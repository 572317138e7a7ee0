"""``main()`` as a real process: it starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.buildrunner import listing, read_text
from harness.git_repos import WorkRepo
from harness.processes import process_alive
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildRunnerClient,
    BuildSource,
    BuildState,
    TargetSpec,
    TriggerSpec,
)
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.testing import until
from stovepipe.testing.contracts.buildrunner import wait_terminal

START_DEADLINE_S = 60.0


@pytest.fixture
async def runner_process(
    double: tuple[SourceControlDouble, GrpcServer], tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The runner started the way ``stovepipe ext local-runner`` starts it; its address."""
    stderr = (tmp_path / "runner.stderr").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stovepipe.extensions.buildrunner.local",
        "--listen",
        "127.0.0.1:0",
        "--source-control",
        double[1].address,
        "--work-dir",
        str(tmp_path / "work"),
        "--kill-grace-seconds",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_DEADLINE_S)
        assert line.startswith(b"listening on "), line
        yield process, line.decode().split()[-1]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()


async def test_main_serves_until_sigterm_then_exits_zero(
    runner_process: tuple[asyncio.subprocess.Process, str],
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
) -> None:
    process, address = runner_process
    channel = open_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(
            health_pb2.HealthCheckRequest(service="stovepipe.ext.v1.BuildRunnerService")
        )
        client = BuildRunnerClient(channel)
        head = double[0].mint(repo.commit({"a": "a"}))
        spec = TriggerSpec(
            source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
            head_uri=head,
            targets=(TargetSpec(name="t", command="test -f a"),),
        )
        report = await wait_terminal(client, await client.trigger(spec))
    finally:
        await channel.close(None)

    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), START_DEADLINE_S)

    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert report.state is BuildState.SUCCEEDED
    assert code == 0


async def test_sigterm_cancels_running_builds_and_removes_their_checkouts(
    runner_process: tuple[asyncio.subprocess.Process, str],
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    tmp_path: Path,
) -> None:
    process, address = runner_process
    pidfile = tmp_path / "pid"
    channel = open_channel(address)
    try:
        client = BuildRunnerClient(channel)
        head = double[0].mint(repo.commit({"a": "a"}))
        await client.trigger(
            TriggerSpec(
                source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
                head_uri=head,
                targets=(TargetSpec(name="t", command=f"echo $$ > '{pidfile}'; exec sleep 60"),),
            )
        )

        async def started() -> bool:
            return "pid" in listing(tmp_path) and read_text(pidfile).strip() != ""

        await until(started, what="target start")
    finally:
        await channel.close(None)

    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), START_DEADLINE_S)

    assert code == 0
    assert not process_alive(int(read_text(pidfile)))
    assert listing(tmp_path / "work" / "builds") == []


def test_main_refuses_to_start_without_a_source_control_address(tmp_path: Path) -> None:
    from stovepipe.extensions.buildrunner.local import main

    with pytest.raises(SystemExit) as exited:
        main(["--work-dir", str(tmp_path)])
    assert exited.value.code == 2
