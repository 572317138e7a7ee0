"""Serve any ``ProjectMapper`` as ``stovepipe.ext.v1.ProjectMapperService``.

``InvalidMapInput`` becomes ``INVALID_ARGUMENT``; an ``AioRpcError`` (what the
fake may raise) keeps its own code.
"""

from __future__ import annotations

import grpc

from stovepipe.ext.v1 import project_mapper_pb2 as pb
from stovepipe.ext.v1 import project_mapper_pb2_grpc as pb_grpc
from stovepipe.extensions.projectmapper.codec import decode_map, encode_impacts
from stovepipe.extensions.projectmapper.contract import ProjectMapper
from stovepipe.extensions.projectmapper.errors import InvalidMapInput

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ProjectMapperService"].full_name

Context = grpc.aio.ServicerContext[object, object]


class ProjectMapperServicer(pb_grpc.ProjectMapperServiceServicer):
    """Adapts a ``ProjectMapper`` to the generated servicer interface."""

    def __init__(self, mapper: ProjectMapper) -> None:
        self._mapper = mapper

    def register(self, server: grpc.aio.Server) -> None:
        """A ``grpcutil`` registrar."""
        pb_grpc.add_ProjectMapperServiceServicer_to_server(self, server)

    async def Map(self, request: pb.MapRequest, context: Context) -> pb.MapResponse:
        try:
            impacts = await self._mapper.map(decode_map(request))
        except InvalidMapInput as exc:
            await context.abort(exc.code, str(exc))
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        return encode_impacts(impacts)
