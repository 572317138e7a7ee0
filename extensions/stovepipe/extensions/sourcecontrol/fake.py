"""An in-process ``SourceControl`` over an in-memory commit graph, for tests of core.

Tests build history with ``FakeSourceControl.repository(location)``: commits
with parents and file contents, branches moved forward, force-pushed or
deleted, unreachable commits garbage-collected. The fake keeps the contract
the git server keeps (opaque URIs it validates, ``INVALID_ARGUMENT`` for a
URI it did not mint, ``NOT_FOUND`` for an unknown ref or commit,
``FAILED_PRECONDITION`` for an unknown repository, ``UNKNOWN`` ancestry for a
vanished commit, promotion that never moves backwards), raising the
``grpc.aio.AioRpcError`` a client would; the contract suite in
``tests/extensions/sourcecontrol`` holds both to the same behaviour.

Every call is recorded in ``calls``; ``fail`` scripts the next answers of a
method as errors (an ``UNAVAILABLE`` fetch, say).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from stovepipe.extensions.sourcecontrol.contract import SourceControl
from stovepipe.extensions.sourcecontrol.errors import (
    InvalidArgument,
    NotFound,
    RepositoryUnusable,
    SourceControlError,
    as_rpc_error,
    rpc_error,
)
from stovepipe.extensions.sourcecontrol.model import (
    Ancestry,
    CommitInfo,
    PromoteResult,
    QueueSource,
)
from stovepipe.extensions.sourcecontrol.names import branch_name, queue_branch, quoted

__all__ = ["Call", "FakeCommit", "FakeRepository", "FakeSourceControl"]

DEFAULT_LIST_LIMIT = 1000
DEFAULT_AUTHOR = "Fake Author <fake@stovepipe.invalid>"
FAKE_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_METHODS = frozenset(
    {"resolve_head", "is_ancestor", "list_commits", "changed_files", "describe_commit", "promote"}
)
_URI = re.compile(r"fake\+(?P<repo>[0-9a-f]{12})#(?P<branch>.+)@(?P<commit>[0-9a-f]{40})")


@dataclass(frozen=True)
class FakeCommit:
    """One commit; ``files`` is the whole tree at that commit (path -> content)."""

    id: str
    parents: tuple[str, ...]
    files: Mapping[str, str]
    title: str
    author: str
    time: datetime


@dataclass(frozen=True)
class Call:
    """One recorded call: the Protocol method name, the source and the other arguments."""

    method: str
    source: QueueSource
    args: tuple[object, ...]


class FakeRepository:
    """An in-memory repository: commits, and branches pointing at them."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.key = hashlib.sha256(location.encode()).hexdigest()[:12]
        self._commits: dict[str, FakeCommit] = {}
        self._branches: dict[str, str] = {}
        self._numbers = itertools.count(1)

    def commit(
        self,
        files: Mapping[str, str | None] | None = None,
        *,
        parents: Sequence[str] = (),
        title: str = "change",
        author: str = DEFAULT_AUTHOR,
        time: datetime | None = None,
    ) -> str:
        """Add a commit on top of ``parents`` (none: a root); its id.

        ``files`` changes the first parent's tree: a string is the new content,
        ``None`` deletes the path. No branch moves.
        """
        for parent in parents:
            self.get(parent)
        tree = dict(self._commits[parents[0]].files) if parents else {}
        for path, content in (files or {}).items():
            if content is None:
                tree.pop(path, None)
            else:
                tree[path] = content
        number = next(self._numbers)
        commit_id = hashlib.sha1(  # noqa: S324 - an id, not a security boundary
            f"{self.location}\0{number}\0{title}".encode()
        ).hexdigest()
        self._commits[commit_id] = FakeCommit(
            id=commit_id,
            parents=tuple(parents),
            files=tree,
            title=title,
            author=author,
            time=time or FAKE_EPOCH + timedelta(minutes=number),
        )
        return commit_id

    def advance(
        self,
        branch: str,
        files: Mapping[str, str | None] | None = None,
        *,
        title: str = "change",
        author: str = DEFAULT_AUTHOR,
        time: datetime | None = None,
    ) -> str:
        """Commit on top of ``branch`` (creating it if absent) and move it there; the id."""
        name = branch_name(branch)
        parent = self._branches.get(name)
        commit_id = self.commit(
            files,
            parents=(parent,) if parent else (),
            title=title,
            author=author,
            time=time,
        )
        self._branches[name] = commit_id
        return commit_id

    def move_ref(self, branch: str, commit_id: str) -> None:
        """Fast-forward (or create) ``branch``; ``ValueError`` if that would drop commits."""
        name = branch_name(branch)
        current = self._branches.get(name)
        if current is not None and current not in self.ancestors(commit_id):
            raise ValueError(f"{name} at {current[:7]} does not fast-forward to {commit_id[:7]}")
        self._branches[name] = self.get(commit_id).id

    def force_push(self, branch: str, commit_id: str) -> None:
        """Point ``branch`` at any commit, rewriting its history."""
        self._branches[branch_name(branch)] = self.get(commit_id).id

    def delete_ref(self, branch: str) -> None:
        self._branches.pop(branch_name(branch), None)

    def head(self, branch: str) -> str | None:
        """Where ``branch`` points, or ``None``."""
        return self._branches.get(branch_name(branch))

    def tree(self, commit_id: str) -> Mapping[str, str]:
        return self.get(commit_id).files

    def forget(self, *commit_ids: str) -> None:
        """Drop commits as if garbage-collected; refs to them are the test's business."""
        for commit_id in commit_ids:
            self._commits.pop(commit_id, None)

    def collect_garbage(self) -> list[str]:
        """Forget every commit no branch reaches; the ids forgotten."""
        reachable: set[str] = set()
        for head in self._branches.values():
            reachable |= self.ancestors(head)
        gone = [commit_id for commit_id in self._commits if commit_id not in reachable]
        self.forget(*gone)
        return gone

    def has(self, commit_id: str) -> bool:
        return commit_id in self._commits

    def ancestors(self, commit_id: str) -> set[str]:
        """``commit_id`` and every commit it reaches through parents still present."""
        seen: set[str] = set()
        stack = [commit_id]
        while stack:
            current = stack.pop()
            if current in seen or current not in self._commits:
                continue
            seen.add(current)
            stack.extend(self._commits[current].parents)
        return seen

    def oldest_first(self, head: str, exclude: set[str]) -> list[str]:
        """Commits reachable from ``head`` and not in ``exclude``, parents before children."""
        ordered: list[str] = []
        done: set[str] = set()
        stack: list[tuple[str, bool]] = [(head, False)]
        while stack:
            current, expanded = stack.pop()
            if expanded:
                ordered.append(current)
                continue
            if current in done or current in exclude or current not in self._commits:
                continue
            done.add(current)
            stack.append((current, True))
            stack.extend((parent, False) for parent in reversed(self._commits[current].parents))
        return ordered

    def get(self, commit_id: str) -> FakeCommit:
        """The commit; ``KeyError`` if it was never made or has been forgotten."""
        try:
            return self._commits[commit_id]
        except KeyError:
            raise KeyError(f"commit {commit_id} is not in {self.location}") from None


class FakeSourceControl:
    """``SourceControl`` over ``FakeRepository`` objects, keyed by location."""

    def __init__(self, *, default_limit: int = DEFAULT_LIST_LIMIT) -> None:
        self._repositories: dict[str, FakeRepository] = {}
        self._failures: defaultdict[str, deque[tuple[grpc.StatusCode, str]]] = defaultdict(deque)
        self._default_limit = default_limit
        self.calls: list[Call] = []

    def repository(self, location: str) -> FakeRepository:
        """The repository at ``location``, created empty on first use."""
        if location not in self._repositories:
            self._repositories[location] = FakeRepository(location)
        return self._repositories[location]

    def remove_repository(self, location: str) -> None:
        self._repositories.pop(location, None)

    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str = "injected failure",
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (e.g. ``"resolve_head"``) fail."""
        if method not in _METHODS:
            raise ValueError(f"{method!r} is not a SourceControl method; one of {sorted(_METHODS)}")
        self._failures[method].extend((code, details) for _ in range(times))

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def uri(self, source: QueueSource, commit_id: str) -> str:
        """The URI this fake mints for ``commit_id`` under ``source`` (no checks)."""
        return f"fake+{self._key(source)}#{branch_name(source.ref)}@{commit_id}"

    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        branch = self._enter("resolve_head", source)
        repository = self._repository(source)
        head = repository.head(branch)
        if head is None:
            raise as_rpc_error(NotFound(f"{repository.location} has no branch {quoted(branch)}"))
        return self.uri(source, head)

    async def is_ancestor(
        self,
        source: QueueSource,
        ancestor_uri: str,
        descendant_uri: str,
        *,
        timeout_s: float | None = None,
    ) -> Ancestry:
        self._enter("is_ancestor", source, ancestor_uri, descendant_uri)
        ancestor = self._commit_id(source, ancestor_uri, "ancestor_uri")
        descendant = self._commit_id(source, descendant_uri, "descendant_uri")
        repository = self._repository(source)
        if not (repository.has(ancestor) and repository.has(descendant)):
            return Ancestry.UNKNOWN
        if ancestor in repository.ancestors(descendant):
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
        self._enter("list_commits", source, base_uri, head_uri, limit)
        if limit < 0:
            raise as_rpc_error(InvalidArgument(f"limit must not be negative, got {limit}"))
        head = self._commit_id(source, head_uri, "head_uri")
        base = self._commit_id(source, base_uri, "base_uri") if base_uri else None
        repository = self._repository(source)
        self._require(repository, head, *([base] if base else []))
        exclude = repository.ancestors(base) if base else set()
        kept = repository.oldest_first(head, exclude)[-(limit or self._default_limit) :]
        return [self.uri(source, commit_id) for commit_id in kept]

    async def changed_files(
        self, source: QueueSource, base_uri: str, head_uri: str, *, timeout_s: float | None = None
    ) -> list[str]:
        self._enter("changed_files", source, base_uri, head_uri)
        head = self._commit_id(source, head_uri, "head_uri")
        base = self._commit_id(source, base_uri, "base_uri") if base_uri else None
        repository = self._repository(source)
        self._require(repository, head, *([base] if base else []))
        after = repository.tree(head)
        if base is None:
            return sorted(after)
        before = repository.tree(base)
        return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))

    async def describe_commit(
        self, source: QueueSource, uri: str, *, timeout_s: float | None = None
    ) -> CommitInfo:
        self._enter("describe_commit", source, uri)
        commit_id = self._commit_id(source, uri, "uri")
        repository = self._repository(source)
        self._require(repository, commit_id)
        commit = repository.get(commit_id)
        return CommitInfo(
            time=commit.time,
            author=commit.author,
            title=commit.title,
            short_name=commit.id[:7],
            revision=commit.id,
        )

    async def promote(
        self, source: QueueSource, uri: str, promotion_ref: str, *, timeout_s: float | None = None
    ) -> PromoteResult:
        branch = self._enter("promote", source, uri, promotion_ref)
        target = self._commit_id(source, uri, "uri")
        promoted = self._checked(lambda: branch_name(promotion_ref, what="promotion_ref"))
        if promoted == branch:
            raise as_rpc_error(
                InvalidArgument(f"promotion_ref {quoted(promoted)} is the branch the queue follows")
            )
        repository = self._repository(source)
        self._require(repository, target)
        current = repository.head(promoted)
        if current is not None and target in repository.ancestors(current):
            return PromoteResult(previous_uri=self.uri(source, current), moved=False)
        repository.force_push(promoted, target)
        return PromoteResult(previous_uri=self.uri(source, current) if current else "", moved=True)

    def _enter(self, method: str, source: QueueSource, *args: object) -> str:
        """Record the call, play a scripted failure, validate the source; its branch."""
        self.calls.append(Call(method=method, source=source, args=args))
        if self._failures[method]:
            raise rpc_error(*self._failures[method].popleft())
        return self._checked(lambda: queue_branch(source))

    def _repository(self, source: QueueSource) -> FakeRepository:
        repository = self._repositories.get(source.repository)
        if repository is None:
            raise as_rpc_error(
                RepositoryUnusable(
                    f"queue {quoted(source.queue)}: no repository at {source.repository}"
                )
            )
        return repository

    def _key(self, source: QueueSource) -> str:
        return hashlib.sha256(source.repository.encode()).hexdigest()[:12]

    def _commit_id(self, source: QueueSource, uri: str, field: str) -> str:
        match = _URI.fullmatch(uri)
        if match is None:
            raise as_rpc_error(
                InvalidArgument(f"{field} {quoted(uri)} was not minted by this SourceControl")
            )
        if match["repo"] != self._key(source) or match["branch"] != branch_name(source.ref):
            raise as_rpc_error(
                InvalidArgument(
                    f"{field} {quoted(uri)} belongs to another repository or branch than "
                    f"queue {quoted(source.queue)}"
                )
            )
        return match["commit"]

    @staticmethod
    def _require(repository: FakeRepository, *commit_ids: str) -> None:
        for commit_id in commit_ids:
            if not repository.has(commit_id):
                raise as_rpc_error(NotFound(f"commit {commit_id} is not in {repository.location}"))

    @staticmethod
    def _checked(validate: Callable[[], str]) -> str:
        try:
            return validate()
        except SourceControlError as exc:
            raise as_rpc_error(exc) from exc


_SATISFIES_CONTRACT: type[SourceControl] = FakeSourceControl
