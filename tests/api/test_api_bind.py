"""Servers bind their port exclusively (issue 10, task 3).

grpc sets SO_REUSEPORT by default: a second API on a port already served bound
it too and reported ready, and the kernel spread connections over both.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator

import pytest

from harness.api import Q
from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.grpcutil import BindError, open_channel, start_server
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


def _api(store: Store) -> StovepipeApi:
    pipe = Pipeline(store, [queue_config(Q)])
    return StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator)


async def test_a_second_server_on_a_taken_port_fails_fast(sqlite_store: Store) -> None:
    first = await serve_api(_api(sqlite_store), "127.0.0.1:0")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BindError, match="address already in use") as caught:
            await serve_api(_api(sqlite_store), first.address)
        assert caught.value.errno == errno.EADDRINUSE
        assert loop.time() - started < 5
        with pytest.raises(BindError, match="address already in use"):
            await start_server(first.address, [], [])  # extensions start through here too
        channel = open_channel(first.address)
        try:  # the first server still serves
            await pb_grpc.StovepipeServiceStub(channel).Ping(pb.PingRequest(), timeout=5)
        finally:
            await channel.close(None)
    finally:
        await first.stop(0)
