"""The typed async client core uses to talk to any ProjectMapper server.

Thin on purpose: model <-> protobuf and a deadline on every call;
``grpc.aio.AioRpcError`` propagates for core to classify in one place.
"""

from __future__ import annotations

import grpc

from stovepipe.ext.v1.project_mapper_pb2_grpc import ProjectMapperServiceStub
from stovepipe.extensions.projectmapper.codec import decode_impacts, encode_map
from stovepipe.extensions.projectmapper.model import MapInput, ProjectImpact

DEFAULT_TIMEOUT_SECONDS = 10.0


class ProjectMapperClient:
    """``ProjectMapper`` over a gRPC channel the caller owns (and closes)."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._stub = ProjectMapperServiceStub(channel)
        self._timeout_s = timeout_s

    async def map(self, request: MapInput) -> tuple[ProjectImpact, ...]:
        response = await self._stub.Map(encode_map(request), timeout=self._timeout_s)
        return decode_impacts(response)
