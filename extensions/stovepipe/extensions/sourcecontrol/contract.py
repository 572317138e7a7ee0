"""The SourceControl contract as core sees it."""

from __future__ import annotations

from typing import Protocol

from stovepipe.extensions.sourcecontrol.model import (
    Ancestry,
    CommitInfo,
    PromoteResult,
    QueueSource,
)


class SourceControl(Protocol):
    """Owns commit identity for Queues; satisfied by the gRPC client and the fake.

    Failures surface as ``grpc.aio.AioRpcError`` carrying the status code a
    server sends (``INVALID_ARGUMENT`` for a URI it did not mint, ``NOT_FOUND``
    for an unknown ref or commit, ``FAILED_PRECONDITION`` for a missing
    repository, ``UNAVAILABLE`` for a transient fetch failure), so one
    classifier serves production and tests alike. ``timeout_s`` bounds one call;
    ``None`` means the implementation's default.
    """

    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        """The URI of the commit the Queue's ref points at now (after a fetch, for a remote)."""
        ...

    async def is_ancestor(
        self,
        source: QueueSource,
        ancestor_uri: str,
        descendant_uri: str,
        *,
        timeout_s: float | None = None,
    ) -> Ancestry:
        """``UNKNOWN`` (not an error) when either commit is gone."""
        ...

    async def list_commits(
        self,
        source: QueueSource,
        base_uri: str,
        head_uri: str,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[str]:
        """Commits reachable from head but not from base, oldest first.

        An empty ``base_uri`` means from the root; ``limit`` keeps the newest
        that many (0: the implementation's default cap).
        """
        ...

    async def changed_files(
        self, source: QueueSource, base_uri: str, head_uri: str, *, timeout_s: float | None = None
    ) -> list[str]:
        """Sorted paths whose content differs between the two commits (every path
        in head when ``base_uri`` is empty)."""
        ...

    async def describe_commit(
        self, source: QueueSource, uri: str, *, timeout_s: float | None = None
    ) -> CommitInfo: ...

    async def promote(
        self, source: QueueSource, uri: str, promotion_ref: str, *, timeout_s: float | None = None
    ) -> PromoteResult:
        """Point ``promotion_ref`` at ``uri`` unless it already is at it or ahead of it.

        The move is a compare-and-swap: a ref that changed under the call is
        re-read and the decision taken again, so it never moves backwards.
        """
        ...
