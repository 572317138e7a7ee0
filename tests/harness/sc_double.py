"""A SourceControl server double over real git repositories.

It mints its own opaque URIs (``test-commit-<n>``) so the runner cannot get
away with parsing them, answers ``DescribeCommit`` with the full revision and
``ChangedFiles`` with ``git diff --name-only``, and can be told to fail
``ChangedFiles``. Everything else answers UNIMPLEMENTED, so a runner that
asked for more would fail the suite.
"""

from __future__ import annotations

import asyncio
import itertools

import grpc

from stovepipe.ext.v1 import source_control_pb2 as sc_pb
from stovepipe.ext.v1 import source_control_pb2_grpc as sc_grpc
from stovepipe.grpcutil import GrpcServer, start_server

Context = grpc.aio.ServicerContext[object, object]
SERVICE = sc_pb.DESCRIPTOR.services_by_name["SourceControlService"].full_name


class SourceControlDouble(sc_grpc.SourceControlServiceServicer):
    def __init__(self) -> None:
        self._revisions: dict[str, str] = {}
        self._numbers = itertools.count(1)
        self.fail_changed_files = False
        self.unavailable_for = 0
        """The next this many DescribeCommit calls answer UNAVAILABLE (a restarting server)."""
        self.describe_calls = 0

    def mint(self, revision: str) -> str:
        uri = f"test-commit-{next(self._numbers)}"
        self._revisions[uri] = revision
        return uri

    async def _revision(self, uri: str, context: Context) -> str:
        if uri not in self._revisions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no commit {uri}")
        return self._revisions[uri]

    async def DescribeCommit(
        self, request: sc_pb.DescribeCommitRequest, context: Context
    ) -> sc_pb.DescribeCommitResponse:
        self.describe_calls += 1
        if self.unavailable_for > 0:
            self.unavailable_for -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        revision = await self._revision(request.uri, context)
        return sc_pb.DescribeCommitResponse(
            title="change", short_name=revision[:7], revision=revision
        )

    async def ChangedFiles(
        self, request: sc_pb.ChangedFilesRequest, context: Context
    ) -> sc_pb.ChangedFilesResponse:
        if self.fail_changed_files:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "history was rewritten")
        base = await self._revision(request.base_uri, context)
        head = await self._revision(request.head_uri, context)
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            request.source.repository.removeprefix("file://"),
            "diff",
            "--name-only",
            base,
            head,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            await context.abort(grpc.StatusCode.INTERNAL, err.decode())
        return sc_pb.ChangedFilesResponse(paths=out.decode().split())

    async def _unused(self, context: Context) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a runner has no business calling this")

    async def ResolveHead(
        self, request: sc_pb.ResolveHeadRequest, context: Context
    ) -> sc_pb.ResolveHeadResponse:
        await self._unused(context)
        return sc_pb.ResolveHeadResponse()

    async def IsAncestor(
        self, request: sc_pb.IsAncestorRequest, context: Context
    ) -> sc_pb.IsAncestorResponse:
        await self._unused(context)
        return sc_pb.IsAncestorResponse()

    async def ListCommits(
        self, request: sc_pb.ListCommitsRequest, context: Context
    ) -> sc_pb.ListCommitsResponse:
        await self._unused(context)
        return sc_pb.ListCommitsResponse()

    async def Promote(
        self, request: sc_pb.PromoteRequest, context: Context
    ) -> sc_pb.PromoteResponse:
        await self._unused(context)
        return sc_pb.PromoteResponse()


async def serve_double(double: SourceControlDouble) -> GrpcServer:
    def register(server: grpc.aio.Server) -> None:
        sc_grpc.add_SourceControlServiceServicer_to_server(double, server)

    return await start_server("127.0.0.1:0", [register], [SERVICE])
