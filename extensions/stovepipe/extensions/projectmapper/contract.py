"""The ProjectMapper contract every implementation (fake, client, server) satisfies."""

from __future__ import annotations

from typing import Protocol

from stovepipe.extensions.projectmapper.model import MapInput, ProjectImpact


class ProjectMapper(Protocol):
    """Attributes a build and a change to projects, one impact per project, in order.

    Raises ``grpc.aio.AioRpcError`` (or, server-side, ``InvalidMapInput``) on failure.
    """

    async def map(self, request: MapInput) -> tuple[ProjectImpact, ...]: ...
