"""The typed async client core uses to talk to any SourceControl server.

It is deliberately thin: it converts between the model and protobuf and sets a
deadline on every call. ``grpc.aio.AioRpcError`` propagates unchanged, because
core classifies gRPC status codes in one place (``stovepipe.failures``).
"""

from __future__ import annotations

import grpc

from stovepipe.ext.v1 import source_control_pb2 as pb
from stovepipe.ext.v1.source_control_pb2_grpc import SourceControlServiceStub
from stovepipe.extensions.sourcecontrol.codec import decode_ancestry, decode_commit, encode_source
from stovepipe.extensions.sourcecontrol.contract import SourceControl
from stovepipe.extensions.sourcecontrol.model import (
    Ancestry,
    CommitInfo,
    PromoteResult,
    QueueSource,
)

__all__ = [
    "Ancestry",
    "CommitInfo",
    "PromoteResult",
    "QueueSource",
    "SourceControl",
    "SourceControlClient",
]

DEFAULT_TIMEOUT_SECONDS = 30.0


class SourceControlClient:
    """``SourceControl`` over a gRPC channel the caller owns (and closes).

    ``timeout_s`` is the deadline of every call unless a call passes its own;
    a fetch of a large remote can take a while, hence the generous default.
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._stub = SourceControlServiceStub(channel)
        self._timeout_s = timeout_s

    def _deadline(self, timeout_s: float | None) -> float:
        return self._timeout_s if timeout_s is None else timeout_s

    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        response = await self._stub.ResolveHead(
            pb.ResolveHeadRequest(source=encode_source(source)),
            timeout=self._deadline(timeout_s),
        )
        return response.uri

    async def is_ancestor(
        self,
        source: QueueSource,
        ancestor_uri: str,
        descendant_uri: str,
        *,
        timeout_s: float | None = None,
    ) -> Ancestry:
        response = await self._stub.IsAncestor(
            pb.IsAncestorRequest(
                source=encode_source(source),
                ancestor_uri=ancestor_uri,
                descendant_uri=descendant_uri,
            ),
            timeout=self._deadline(timeout_s),
        )
        return decode_ancestry(response.ancestry)

    async def list_commits(
        self,
        source: QueueSource,
        base_uri: str,
        head_uri: str,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[str]:
        response = await self._stub.ListCommits(
            pb.ListCommitsRequest(
                source=encode_source(source), base_uri=base_uri, head_uri=head_uri, limit=limit
            ),
            timeout=self._deadline(timeout_s),
        )
        return list(response.uris)

    async def changed_files(
        self, source: QueueSource, base_uri: str, head_uri: str, *, timeout_s: float | None = None
    ) -> list[str]:
        response = await self._stub.ChangedFiles(
            pb.ChangedFilesRequest(
                source=encode_source(source), base_uri=base_uri, head_uri=head_uri
            ),
            timeout=self._deadline(timeout_s),
        )
        return list(response.paths)

    async def describe_commit(
        self, source: QueueSource, uri: str, *, timeout_s: float | None = None
    ) -> CommitInfo:
        response = await self._stub.DescribeCommit(
            pb.DescribeCommitRequest(source=encode_source(source), uri=uri),
            timeout=self._deadline(timeout_s),
        )
        return decode_commit(response)

    async def promote(
        self, source: QueueSource, uri: str, promotion_ref: str, *, timeout_s: float | None = None
    ) -> PromoteResult:
        response = await self._stub.Promote(
            pb.PromoteRequest(source=encode_source(source), uri=uri, promotion_ref=promotion_ref),
            timeout=self._deadline(timeout_s),
        )
        return PromoteResult(previous_uri=response.previous_uri, moved=response.moved)


_SATISFIES_CONTRACT: type[SourceControl] = SourceControlClient
