"""The ProjectMapper contract suite runs against the in-process fake and the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stovepipe.extensions.projectmapper import ProjectMapper
from stovepipe.extensions.projectmapper.client import ProjectMapperClient
from stovepipe.extensions.projectmapper.config import serve
from stovepipe.extensions.projectmapper.fake import FakeProjectMapper
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity, open_channel

TOKEN = "contract-suite-token-0123456789abcdef"


@pytest.fixture(params=["fake", "server"])
async def mapper(request: pytest.FixtureRequest) -> AsyncIterator[ProjectMapper]:
    if request.param == "fake":
        yield FakeProjectMapper()
        return
    server = await serve("127.0.0.1:0", security=ServerSecurity(token=TOKEN))
    channel = open_channel(server.address, security=ChannelSecurity(token=TOKEN))
    try:
        yield ProjectMapperClient(channel)
    finally:
        await channel.close(None)
        await server.stop(0)
