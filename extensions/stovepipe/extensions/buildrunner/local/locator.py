"""What the local runner needs to know about commits, asked of a SourceControl server.

URIs are opaque: only SourceControl can say which revision a URI names and
which files changed between two of them, so the runner asks it instead of
parsing anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc

from stovepipe.ext.v1 import source_control_pb2 as sc_pb
from stovepipe.ext.v1.source_control_pb2_grpc import SourceControlServiceStub
from stovepipe.extensions.buildrunner.model import QueueSourceLike

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_FOR_SECONDS = 60.0
"""How long a transient SourceControl failure is retried before the build errors:
long enough to ride out the extension being restarted by its supervisor."""
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

_log = logging.getLogger(__name__)
T = TypeVar("T")


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
    guess around. A transient failure (the server restarting, a timeout) is
    retried with backoff for ``retry_for_s``: an errored build fails its commit
    closed, so giving up at the first UNAVAILABLE would record a good commit
    broken because of an outage.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry_for_s: float = DEFAULT_RETRY_FOR_SECONDS,
        first_backoff_s: float = 0.2,
    ):
        self._stub = SourceControlServiceStub(channel)
        self._timeout = timeout
        self._retry_for_s = retry_for_s
        self._first_backoff_s = first_backoff_s

    async def _call(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._retry_for_s
        backoff = self._first_backoff_s
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSIENT or loop.time() + backoff > give_up:
                    raise _failure(method, exc) from exc
                _log.warning(
                    "source control %s: %s; trying again in %.1fs", method, exc.code().name, backoff
                )
            await asyncio.sleep(backoff)  # a backoff, not a wait for a condition
            backoff = min(backoff * 2, 5.0)

    async def revision(self, source: QueueSourceLike, uri: str) -> str:
        request = sc_pb.DescribeCommitRequest(source=_source(source), uri=uri)
        response = await self._call(
            "DescribeCommit", lambda: self._stub.DescribeCommit(request, timeout=self._timeout)
        )
        if not response.revision:
            raise LocatorError("source control DescribeCommit returned no revision to check out")
        return response.revision

    async def changed_files(
        self, source: QueueSourceLike, base_uri: str, head_uri: str
    ) -> tuple[str, ...]:
        request = sc_pb.ChangedFilesRequest(
            source=_source(source), base_uri=base_uri, head_uri=head_uri
        )
        response = await self._call(
            "ChangedFiles", lambda: self._stub.ChangedFiles(request, timeout=self._timeout)
        )
        return tuple(response.paths)
