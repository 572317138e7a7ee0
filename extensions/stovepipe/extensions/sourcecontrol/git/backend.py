"""``SourceControl`` over git: the logic behind the reference server.

Only repositories on the allow-list (``served.ServedRepositories``) are
answered for, and only the promotions it lists are made; anything else is
PERMISSION_DENIED, decided before any disk or network is touched.
A local path is read in place; a URL (and, with ``mirror_local_paths``, a
local path too) is read through a bare mirror that ``resolve_head`` fetches
on every call, so a remote that moved is seen at once. The other methods
work on the mirror as it is and fetch the Queue's branch only when a commit
they were asked about is not there yet (minted by another replica, or the
mirror was wiped).

Errors are ``SourceControlError``s; ``SourceControlServicer`` turns them into
status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from stovepipe.extensions.sourcecontrol.contract import SourceControl
from stovepipe.extensions.sourcecontrol.errors import (
    Contended,
    InvalidArgument,
    NotFound,
    RepositoryUnusable,
    TimedOut,
)
from stovepipe.extensions.sourcecontrol.git.location import Location, parse_location
from stovepipe.extensions.sourcecontrol.git.mirror import MirrorCache, default_cache_dir
from stovepipe.extensions.sourcecontrol.git.repository import GitRepository, open_local
from stovepipe.extensions.sourcecontrol.git.served import ServedRepositories
from stovepipe.extensions.sourcecontrol.git.uri import commit_of, mint
from stovepipe.extensions.sourcecontrol.model import (
    Ancestry,
    CommitInfo,
    PromoteResult,
    QueueSource,
)
from stovepipe.extensions.sourcecontrol.names import branch_name, queue_branch, quoted

PROMOTE_ATTEMPTS = 5


@dataclass(frozen=True)
class GitSettings:
    """How the git server works; defaults suit an operator who set nothing.

    ``cache_dir`` holds the mirrors (default: ``default_cache_dir()``);
    ``default_list_limit`` caps ``list_commits`` when the caller gives no limit.
    """

    cache_dir: Path | None = None
    mirror_local_paths: bool = False
    default_list_limit: int = 1000
    local_timeout_s: float = 60.0
    network_timeout_s: float = 300.0


@dataclass(frozen=True)
class _Queue:
    """A validated source: where its repository is and which branch it follows."""

    source: QueueSource
    location: Location
    branch: str
    mirrored: bool

    def uri(self, commit: str) -> str:
        return mint(self.location, self.branch, commit)

    def commit(self, uri: str, field: str) -> str:
        return commit_of(uri, location=self.location, branch=self.branch, field=field)


class GitSourceControl:
    """Answers the SourceControl contract from the git repositories in ``served``.

    Every method validates all of its input (source, URIs, names) before it
    touches a disk or a network, so a malformed request is INVALID_ARGUMENT
    whatever state the repository is in, and a repository or promotion ref
    that is not on the list is PERMISSION_DENIED.
    """

    def __init__(self, served: ServedRepositories, settings: GitSettings | None = None) -> None:
        self._served = served
        self._settings = settings or GitSettings()
        self._mirrors = MirrorCache(
            self._settings.cache_dir or default_cache_dir(),
            local_timeout_s=self._settings.local_timeout_s,
            network_timeout_s=self._settings.network_timeout_s,
        )
        self._promotions: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def close(self) -> None:
        """Stop fetches still running for callers that gave up; for a clean shutdown."""
        await self._mirrors.close()

    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        async with _budget("ResolveHead", timeout_s):
            queue = self._queue(source)
            repository = await self._repository(queue)
            if queue.mirrored:
                await self._mirrors.fetch(queue.location, repository, queue.branch)
            head = await repository.branch_commit(queue.branch)
            if head is None:
                raise NotFound(f"{queue.location.display} has no branch {quoted(queue.branch)}")
            return queue.uri(head)

    async def is_ancestor(
        self,
        source: QueueSource,
        ancestor_uri: str,
        descendant_uri: str,
        *,
        timeout_s: float | None = None,
    ) -> Ancestry:
        async with _budget("IsAncestor", timeout_s):
            queue = self._queue(source)
            ancestor = queue.commit(ancestor_uri, "ancestor_uri")
            descendant = queue.commit(descendant_uri, "descendant_uri")
            repository = await self._repository(queue)
            if await self._absent(queue, repository, ancestor, descendant):
                return Ancestry.UNKNOWN
            if await repository.is_ancestor(ancestor, descendant):
                return Ancestry.ANCESTOR
            return Ancestry.NOT_ANCESTOR

    async def list_commits(
        self,
        source: QueueSource,
        base_uri: str,
        head_uri: str,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[str]:
        async with _budget("ListCommits", timeout_s):
            queue = self._queue(source)
            if limit < 0:
                raise InvalidArgument(f"limit must not be negative, got {limit}")
            head = queue.commit(head_uri, "head_uri")
            base = queue.commit(base_uri, "base_uri") if base_uri else None
            repository = await self._repository(queue)
            await self._require(queue, repository, head, *([base] if base else []))
            commits = await repository.commits_between(
                base, head, limit or self._settings.default_list_limit
            )
            return [queue.uri(commit) for commit in commits]

    async def changed_files(
        self, source: QueueSource, base_uri: str, head_uri: str, *, timeout_s: float | None = None
    ) -> list[str]:
        async with _budget("ChangedFiles", timeout_s):
            queue = self._queue(source)
            head = queue.commit(head_uri, "head_uri")
            base = queue.commit(base_uri, "base_uri") if base_uri else None
            repository = await self._repository(queue)
            if base is None:
                await self._require(queue, repository, head)
                return await repository.all_paths(head)
            await self._require(queue, repository, base, head)
            return await repository.changed_paths(base, head)

    async def describe_commit(
        self, source: QueueSource, uri: str, *, timeout_s: float | None = None
    ) -> CommitInfo:
        async with _budget("DescribeCommit", timeout_s):
            queue = self._queue(source)
            commit = queue.commit(uri, "uri")
            repository = await self._repository(queue)
            await self._require(queue, repository, commit)
            return await repository.describe(commit)

    async def promote(
        self, source: QueueSource, uri: str, promotion_ref: str, *, timeout_s: float | None = None
    ) -> PromoteResult:
        async with _budget("Promote", timeout_s):
            queue = self._queue(source)
            commit = queue.commit(uri, "uri")
            promoted = branch_name(promotion_ref, what="promotion_ref")
            if promoted == queue.branch:
                raise InvalidArgument(
                    f"promotion_ref {quoted(promoted)} is the branch queue "
                    f"{quoted(source.queue)} follows; promote to a branch of its own"
                )
            self._served.check_promotion(queue.location, queue.branch, promoted, source.queue)
            repository = await self._repository(queue)
            await self._require(queue, repository, commit)
            async with self._promotions[(queue.location.key, promoted)]:
                if queue.mirrored:
                    return await self._promote_remote(queue, repository, commit, promoted)
                return await self._promote_local(queue, repository, commit, promoted)

    async def _promote_local(
        self, queue: _Queue, repository: GitRepository, commit: str, promoted: str
    ) -> PromoteResult:
        worktree = await repository.worktree_of(promoted)
        if worktree is not None:
            raise RepositoryUnusable(
                f"promotion ref {quoted(promoted)} is checked out in {worktree}; moving it "
                "would leave that working tree behind; promote to a branch nobody checks out"
            )
        for _ in range(PROMOTE_ATTEMPTS):
            current = await repository.branch_commit(promoted)
            if current is not None and await _at_or_ahead(repository, commit, current):
                return PromoteResult(previous_uri=queue.uri(current), moved=False)
            if await repository.swap_branch(promoted, commit, current):
                return PromoteResult(previous_uri=queue.uri(current) if current else "", moved=True)
        raise _contended(queue, promoted)

    async def _promote_remote(
        self, queue: _Queue, mirror: GitRepository, commit: str, promoted: str
    ) -> PromoteResult:
        for _ in range(PROMOTE_ATTEMPTS):
            current = await self._mirrors.remote_branch(queue.location, promoted)
            if current is not None and await mirror.missing(current):
                await self._mirrors.fetch(queue.location, mirror, promoted)
            if current is not None and await _at_or_ahead(mirror, commit, current):
                return PromoteResult(previous_uri=queue.uri(current), moved=False)
            if await self._mirrors.push(queue.location, mirror, commit, promoted, current):
                return PromoteResult(previous_uri=queue.uri(current) if current else "", moved=True)
        raise _contended(queue, promoted)

    def _queue(self, source: QueueSource) -> _Queue:
        branch = queue_branch(source)
        location = self._served.location(parse_location(source.repository), source.queue)
        mirrored = location.remote or self._settings.mirror_local_paths
        return _Queue(source, location, branch, mirrored)

    async def _repository(self, queue: _Queue) -> GitRepository:
        if queue.mirrored:
            return await self._mirrors.open(queue.location)
        return await open_local(
            queue.location.path, queue.location.display, self._settings.local_timeout_s
        )

    async def _absent(self, queue: _Queue, repository: GitRepository, *commits: str) -> set[str]:
        """The commits not in the repository, after one fetch of the Queue's branch for a
        mirror that lacks some (a branch the remote deleted fetches nothing)."""
        missing = await repository.missing(*commits)
        if missing and queue.mirrored:
            with contextlib.suppress(NotFound):
                await self._mirrors.fetch(queue.location, repository, queue.branch)
            missing = await repository.missing(*commits)
        return missing

    async def _require(self, queue: _Queue, repository: GitRepository, *commits: str) -> None:
        missing = await self._absent(queue, repository, *commits)
        if missing:
            raise NotFound(
                f"{queue.location.display} has no commit {', '.join(sorted(missing))}; "
                "it may have been dropped by a force push and garbage-collected"
            )


async def _at_or_ahead(repository: GitRepository, commit: str, current: str) -> bool:
    return current == commit or await repository.is_ancestor(commit, current)


def _contended(queue: _Queue, promoted: str) -> Contended:
    return Contended(
        f"promotion ref {quoted(promoted)} of {queue.location.display} kept moving under "
        f"{PROMOTE_ATTEMPTS} compare-and-swap attempts; retry later"
    )


@contextlib.asynccontextmanager
async def _budget(method: str, timeout_s: float | None) -> AsyncIterator[None]:
    """Bound a whole call by the caller's deadline, so abandoned work stops (and its git
    processes are killed) rather than finishing for nobody."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        raise TimedOut(f"{method} did not finish within the caller's {timeout_s:.1f}s") from exc


_SATISFIES_CONTRACT: type[SourceControl] = GitSourceControl
