"""The API served over real gRPC on each storage backend (``served``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from harness.api import Q, ServedApi
from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.storage import Store
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc


@pytest.fixture
async def served(store: Store) -> AsyncIterator[ServedApi]:
    """The API on ``store`` (once per backend), Queue ``mono/main``."""
    pipe = Pipeline(store, [queue_config(Q)])
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator), "127.0.0.1:0"
    )
    channel = grpc.aio.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    try:
        yield ServedApi(server, channel, pb_grpc.StovepipeServiceStub(channel), pipe)
    finally:
        await channel.close(None)
        await server.stop(0)
