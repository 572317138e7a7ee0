"""What the local runner needs to know about commits, asked of a SourceControl server.

URIs are opaque: only SourceControl can say which revision a URI names and
which files changed between two of them, so the runner asks it instead of
parsing anything.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from stovepipe.ext.v1 import source_control_pb2 as sc_pb
from stovepipe.ext.v1.source_control_pb2_grpc import SourceControlServiceStub
from stovepipe.extensions.buildrunner.model import QueueSourceLike

DEFAULT_TIMEOUT_SECONDS = 30.0


class LocatorError(Exception):
    """SourceControl could not answer; the message is safe to show in a build report."""


class CommitLocator(Protocol):
    async def revision(self, source: QueueSourceLike, uri: str) -> str:
        """The VCS-native revision to check out for ``uri``."""
        ...

    async def changed_files(
        self, source: QueueSourceLike, base_uri: str, head_uri: str
    ) -> tuple[str, ...]:
        """Repository-relative paths that differ between the two commits."""
        ...


def _source(source: QueueSourceLike) -> sc_pb.QueueSource:
    return sc_pb.QueueSource(queue=source.queue, repository=source.repository, ref=source.ref)


def _failure(method: str, exc: grpc.aio.AioRpcError) -> LocatorError:
    return LocatorError(f"source control {method} failed: {exc.code().name}: {exc.details()}")


class SourceControlLocator:
    """``CommitLocator`` over the SourceControl gRPC contract.

    The revision comes from ``DescribeCommitResponse.revision``; an empty one
    means the SourceControl server predates that field, which we refuse to
    guess around.
    """

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self._stub = SourceControlServiceStub(channel)
        self._timeout = timeout

    async def revision(self, source: QueueSourceLike, uri: str) -> str:
        request = sc_pb.DescribeCommitRequest(source=_source(source), uri=uri)
        try:
            response = await self._stub.DescribeCommit(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _failure("DescribeCommit", exc) from exc
        if not response.revision:
            raise LocatorError("source control DescribeCommit returned no revision to check out")
        return response.revision

    async def changed_files(
        self, source: QueueSourceLike, base_uri: str, head_uri: str
    ) -> tuple[str, ...]:
        request = sc_pb.ChangedFilesRequest(
            source=_source(source), base_uri=base_uri, head_uri=head_uri
        )
        try:
            response = await self._stub.ChangedFiles(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _failure("ChangedFiles", exc) from exc
        return tuple(response.paths)
