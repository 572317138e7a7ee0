"""``main()`` as a real process: it starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.git_repos import WorkRepo
from stovepipe.extensions.sourcecontrol import SERVICE_NAME, QueueSource, SourceControlClient
from stovepipe.grpcutil import open_channel

START_DEADLINE_S = 60.0


def write_config(path: Path, repository: Path) -> Path:
    """A ``stovepipe.yaml`` with one Queue on ``repository``: what the server serves."""
    queue = {
        "name": "demo/main",
        "source": {"repository": str(repository)},
        "build": {"targets": [{"name": "t", "command": "true"}]},
        "promotion_ref": "verified-main",
    }
    path.write_text(yaml.safe_dump({"queues": [queue]}))
    return path


@pytest.fixture
async def server_process(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The server started the way ``stovepipe ext git`` starts it; its address."""
    stderr = (tmp_path / "server.stderr").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stovepipe.extensions.sourcecontrol.git",
        "--listen",
        "127.0.0.1:0",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--config",
        str(write_config(tmp_path / "stovepipe.yaml", tmp_path / "repo")),
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
    server_process: tuple[asyncio.subprocess.Process, str], tmp_path: Path
) -> None:
    process, address = server_process
    work = WorkRepo(tmp_path / "repo")
    revision = work.commit({"a.txt": "a\n"}, "first")
    source = QueueSource("demo/main", str(work.path), "main")
    channel = open_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        client = SourceControlClient(channel)
        info = await client.describe_commit(source, await client.resolve_head(source))
    finally:
        await channel.close(None)

    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), START_DEADLINE_S)

    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert info.revision == revision
    assert code == 0


async def test_main_exits_zero_on_sigint_too(
    server_process: tuple[asyncio.subprocess.Process, str],
) -> None:
    process, _ = server_process

    process.send_signal(signal.SIGINT)

    assert await asyncio.wait_for(process.wait(), START_DEADLINE_S) == 0


def test_main_refuses_unknown_arguments() -> None:
    from stovepipe.extensions.sourcecontrol.git import main

    with pytest.raises(SystemExit) as exited:
        main(["--no-such-option"])
    assert exited.value.code == 2


async def test_main_exits_one_when_it_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stovepipe.extensions.sourcecontrol.git",
            "--listen",
            f"127.0.0.1:{port}",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config",
            str(write_config(tmp_path / "stovepipe.yaml", tmp_path / "repo")),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), START_DEADLINE_S)

    assert process.returncode == 1
    assert out == b""
    assert b"could not start" in err
    assert b"Traceback" not in err
