"""The reference server as a process and over the wire: authentication and its command line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
import pytest

from stovepipe.extensions.projectmapper import MapInput
from stovepipe.extensions.projectmapper.client import ProjectMapperClient
from stovepipe.extensions.projectmapper.config import serve
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity, open_channel

TOKEN = "server-suite-token-0123456789abcdef"


async def test_a_caller_without_the_token_is_refused() -> None:
    server = await serve("127.0.0.1:0", security=ServerSecurity(token=TOKEN))
    channel = open_channel(server.address, security=ChannelSecurity(token="wrong-" + TOKEN))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ProjectMapperClient(channel).map(
                MapInput(queue="q/main", targets=(), changed_files=(), projects=())
            )
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close(None)
        await server.stop(0)


async def test_the_command_serves_until_sigterm_and_exits_zero() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stovepipe.cli.main", "ext", "project-mapper",
        "--listen", "127.0.0.1:0", "--token-env", "MAPPER_TOKEN",
        env={**os.environ, "MAPPER_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
    assert line.startswith("listening on 127.0.0.1:")
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 60) == 0


async def test_an_unauthenticated_public_listener_is_refused_with_exit_2() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stovepipe.cli.main", "ext", "project-mapper",
        "--listen", "0.0.0.0:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"project-mapper" in err
