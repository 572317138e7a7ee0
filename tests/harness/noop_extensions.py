"""Extensions that cost nothing: a SourceControl and a BuildRunner answering from memory.

The pipeline under test is the product (its workers, the broker, PostgreSQL);
the git server and the local runner are not what a scale-out test or a
throughput benchmark measures, and at hundreds of heads they would be most of
the cost. These two servers keep the contracts core relies on, over real gRPC
on loopback, and do no work:

* :class:`NoopSourceControl` holds one linear history per (repository, branch).
  The caller appends commits (:meth:`NoopSourceControl.push`, or
  :meth:`NoopHistory.commit`); ``ResolveHead`` answers the newest, ancestry is
  position in the list, ``ChangedFiles`` is always empty, ``Promote`` moves an
  in-memory ref forward only (a compare-and-swap under one lock).
* :class:`NoopBuildRunner` finishes every build the moment it is triggered,
  with the verdict the head commit was made with (``history.commit(green=...)``),
  or one set with :meth:`NoopBuildRunner.set_verdict`, green otherwise. Two
  triggers with one idempotency key get one build, as with a real runner;
  :attr:`NoopBuildRunner.builds` is every build it made, so a test can prove
  nothing was built twice, and :attr:`NoopBuildRunner.triggers` counts the calls.

Use::

    async with noop_extensions() as ext:
        history = ext.source_control.history("/repos/a", "main", queue="a/main")
        commit = history.commit(green=False)    # the new head; its build will fail
        # a Queue {"source": {"repository": "/repos/a", "ref": "main"}, ...} with
        # extensions at ext.source_control_address and ext.build_runner_address
        # now ingests history.uri(commit) and records it broken

URIs look like ``noop+<repository>#<branch>@<commit>``: only these servers read
them (core never does), and ``harness.fault_checks.commit_of`` finds the commit
id after the ``@``. A :class:`NoopHistory` offers what the fault suite's invariant
checks read of a Queue's repository (``truth``, ``ref``, ``position``), so a
:class:`~harness.fault_stack.FaultStack` can run on these servers instead of
git (``FaultStack(..., noop=...)``).

The servers run in the caller's event loop; both are plaintext on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stovepipe.extensions.buildrunner import (
    BuildEnded,
    BuildReport,
    BuildState,
    LogChunk,
    TargetReport,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.errors import BuildNotFound, TargetNotFound
from stovepipe.extensions.buildrunner.feed import EndedFeed
from stovepipe.extensions.buildrunner.servicer import SERVICE_NAME as RUNNER_SERVICE
from stovepipe.extensions.buildrunner.servicer import BuildRunnerServicer
from stovepipe.extensions.buildrunner.tracecontext import current_trace_context
from stovepipe.extensions.sourcecontrol import Ancestry, CommitInfo, PromoteResult, QueueSource
from stovepipe.extensions.sourcecontrol.errors import (
    InvalidArgument,
    NotFound,
    RepositoryUnusable,
)
from stovepipe.extensions.sourcecontrol.servicer import SERVICE_NAME as SC_SERVICE
from stovepipe.extensions.sourcecontrol.servicer import SourceControlServicer
from stovepipe.grpcutil import GrpcServer, start_server

__all__ = [
    "NoopBuildRunner",
    "NoopExtensions",
    "NoopHistory",
    "NoopSourceControl",
    "noop_extensions",
    "uri_commit",
]

AUTHOR = "Noop Author <noop@stovepipe.invalid>"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def uri_commit(uri: str) -> str:
    """The commit id inside a URI these servers minted."""
    return uri.rsplit("@", 1)[-1]


@dataclass
class NoopHistory:
    """One branch's linear history, the true verdict of each commit, and the refs
    ``Promote`` moved. Thread-safe: tests commit from threads, servers read in the loop."""

    repository: str
    branch: str
    queue: str = ""
    order: list[str] = field(default_factory=list)
    """Commit ids, oldest first."""
    truth: dict[str, bool] = field(default_factory=dict)
    """Commit id -> whether its build passes (what :class:`NoopBuildRunner` answers)."""
    refs: dict[str, str] = field(default_factory=dict)
    """Other refs of the repository (promotion refs), name -> commit id."""
    _index: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def origin(self) -> Path:
        """The repository, as the Queue's ``source.repository`` names it."""
        return Path(self.repository)

    def commit(self, green: bool = True) -> str:
        """Append a commit whose build passes when ``green``; its id (unique across
        histories, so a runner can tell commits of different repositories apart)."""
        with self._lock:
            commit_id = f"{len(self.order) + 1:06d}-{uuid.uuid4().hex[:10]}"
            self._index[commit_id] = len(self.order)
            self.order.append(commit_id)
            self.truth[commit_id] = green
            return commit_id

    def head(self) -> str | None:
        with self._lock:
            return self.order[-1] if self.order else None

    def position(self, commit_id: str | None) -> int:
        """Index of ``commit_id`` in the history; -1 for none or an unknown one."""
        with self._lock:
            return self._index.get(commit_id, -1) if commit_id is not None else -1

    def between(self, start: int, end: int) -> list[str]:
        """Commit ids at positions ``start`` up to (not including) ``end``."""
        with self._lock:
            return self.order[start:end]

    def ref(self, name: str) -> str | None:
        """Where ``name`` points: the branch's head for the branch, else a moved ref."""
        if _branch(name) == self.branch:
            return self.head()
        with self._lock:
            return self.refs.get(_branch(name))

    def uri(self, commit_id: str) -> str:
        return f"noop+{self.repository}#{self.branch}@{commit_id}"

    def move_forward(self, name: str, commit_id: str) -> tuple[str | None, bool]:
        """Point ref ``name`` at ``commit_id`` unless it is there or ahead already;
        (where it was, whether it moved). One lock: a compare-and-swap."""
        with self._lock:
            before = self.refs.get(name)
            moved = before is None or self._index.get(before, -1) < self._index[commit_id]
            if moved:
                self.refs[name] = commit_id
            return before, moved


class NoopSourceControl:
    """A ``SourceControl`` over :class:`NoopHistory` objects (see the module docstring).

    A repository or branch nobody created answers FAILED_PRECONDITION or
    NOT_FOUND, and a URI it did not mint INVALID_ARGUMENT, as the git server does.
    """

    def __init__(self) -> None:
        self._histories: dict[tuple[str, str], NoopHistory] = {}
        self.calls: Counter[str] = Counter()
        """Calls per method, for a benchmark's report."""

    def history(self, repository: str, branch: str = "main", *, queue: str = "") -> NoopHistory:
        """The history of ``branch`` in ``repository``, created empty on first use."""
        key = (repository, _branch(branch))
        if key not in self._histories:
            self._histories[key] = NoopHistory(repository, _branch(branch), queue)
        return self._histories[key]

    def push(self, repository: str, branch: str = "main", *, green: bool = True) -> str:
        """Append a commit to ``branch`` of ``repository``; its URI."""
        history = self.history(repository, branch)
        return history.uri(history.commit(green))

    def truth_of(self, uri: str) -> bool | None:
        """The verdict a commit was made with (:meth:`NoopHistory.commit`); None when
        the URI names no commit of these histories."""
        where, _, commit_id = uri.removeprefix("noop+").rpartition("@")
        repository, _, branch = where.rpartition("#")
        history = self._histories.get((repository, branch))
        return history.truth.get(commit_id) if history is not None else None

    def _of(self, source: QueueSource) -> NoopHistory:
        if not any(repo == source.repository for repo, _ in self._histories):
            raise RepositoryUnusable(f"no repository {source.repository!r}")
        history = self._histories.get((source.repository, _branch(source.ref)))
        if history is None:
            raise NotFound(f"no branch {source.ref!r} in {source.repository!r}")
        return history

    def _commit(self, history: NoopHistory, uri: str) -> str:
        prefix = history.uri("")
        if not uri.startswith(prefix) or history.position(uri_commit(uri)) < 0:
            raise InvalidArgument(
                f"{uri!r} was not minted for {history.repository}#{history.branch}"
            )
        return uri_commit(uri)

    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        self.calls["resolve_head"] += 1
        history = self._of(source)
        head = history.head()
        if head is None:
            raise NotFound(f"branch {source.ref!r} of {source.repository!r} has no commit")
        return history.uri(head)

    async def is_ancestor(
        self,
        source: QueueSource,
        ancestor_uri: str,
        descendant_uri: str,
        *,
        timeout_s: float | None = None,
    ) -> Ancestry:
        self.calls["is_ancestor"] += 1
        history = self._of(source)
        ancestor = history.position(self._commit(history, ancestor_uri))
        descendant = history.position(self._commit(history, descendant_uri))
        return Ancestry.ANCESTOR if ancestor <= descendant else Ancestry.NOT_ANCESTOR

    async def list_commits(
        self,
        source: QueueSource,
        base_uri: str,
        head_uri: str,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[str]:
        self.calls["list_commits"] += 1
        history = self._of(source)
        end = history.position(self._commit(history, head_uri)) + 1
        start = history.position(self._commit(history, base_uri)) + 1 if base_uri else 0
        commits = history.between(start, end)
        if limit > 0:
            commits = commits[-limit:]
        return [history.uri(c) for c in commits]

    async def changed_files(
        self, source: QueueSource, base_uri: str, head_uri: str, *, timeout_s: float | None = None
    ) -> list[str]:
        self.calls["changed_files"] += 1
        history = self._of(source)
        self._commit(history, head_uri)
        if base_uri:
            self._commit(history, base_uri)
        return []

    async def describe_commit(
        self, source: QueueSource, uri: str, *, timeout_s: float | None = None
    ) -> CommitInfo:
        self.calls["describe_commit"] += 1
        history = self._of(source)
        commit_id = self._commit(history, uri)
        return CommitInfo(
            time=EPOCH + timedelta(seconds=history.position(commit_id)),
            author=AUTHOR,
            title=f"change {commit_id}",
            short_name=commit_id,
            revision=commit_id,
        )

    async def promote(
        self, source: QueueSource, uri: str, promotion_ref: str, *, timeout_s: float | None = None
    ) -> PromoteResult:
        self.calls["promote"] += 1
        history = self._of(source)
        before, moved = history.move_forward(_branch(promotion_ref), self._commit(history, uri))
        return PromoteResult(previous_uri=history.uri(before) if before else "", moved=moved)


@dataclass(frozen=True)
class NoopBuild:
    """One build the runner made: what it was asked and what it answered."""

    build_id: str
    key: str
    head_uri: str
    green: bool
    targets: tuple[str, ...]


class NoopBuildRunner:
    """A ``BuildRunner`` whose builds end as they start (see the module docstring)."""

    def __init__(
        self, source_control: NoopSourceControl | None = None, *, default_green: bool = True
    ) -> None:
        """Verdicts come from :meth:`set_verdict`, else from the ``truth`` of the commit
        in ``source_control``'s histories, else ``default_green``."""
        self._source_control = source_control
        self.default_green = default_green
        self._verdicts: dict[str, bool] = {}
        self._builds: dict[str, NoopBuild] = {}
        self._by_key: dict[str, str] = {}
        self._numbers = itertools.count(1)
        self.triggers = 0
        """Trigger calls, repeats included."""
        self._ended = EndedFeed()

    def set_verdict(self, commit_or_uri: str, green: bool) -> None:
        """The verdict of every build of that head commit (a URI or a bare commit id)."""
        self._verdicts[uri_commit(commit_or_uri)] = green

    @property
    def builds(self) -> list[NoopBuild]:
        """Every build made, oldest first (one per idempotency key)."""
        return list(self._builds.values())

    def _green(self, head_uri: str) -> bool:
        commit_id = uri_commit(head_uri)
        if commit_id in self._verdicts:
            return self._verdicts[commit_id]
        if self._source_control is not None:
            truth = self._source_control.truth_of(head_uri)
            if truth is not None:
                return truth
        return self.default_green

    async def trigger(self, spec: TriggerSpec) -> str:
        self.triggers += 1
        if spec.idempotency_key and spec.idempotency_key in self._by_key:
            return self._by_key[spec.idempotency_key]
        build_id = f"noop-build-{next(self._numbers)}"
        self._builds[build_id] = NoopBuild(
            build_id=build_id,
            key=spec.idempotency_key,
            head_uri=spec.head_uri,
            green=self._green(spec.head_uri),
            targets=tuple(t.name for t in spec.targets),
        )
        if spec.idempotency_key:
            self._by_key[spec.idempotency_key] = build_id
        self._ended.publish(
            BuildEnded(
                build_id=build_id,
                state=BuildState.SUCCEEDED if self._builds[build_id].green else BuildState.FAILED,
                idempotency_key=spec.idempotency_key,
                trace_context=current_trace_context(),
            )
        )
        return build_id

    def watch_builds(self) -> AbstractAsyncContextManager[AsyncIterator[BuildEnded]]:
        """Each build ends as it is triggered, so its notice goes out then."""
        return self._ended.watch()

    def _build(self, build_id: str) -> NoopBuild:
        build = self._builds.get(build_id)
        if build is None:
            raise BuildNotFound(build_id)
        return build

    async def status(self, build_id: str) -> BuildReport:
        build = self._build(build_id)
        target = TargetState.SUCCEEDED if build.green else TargetState.FAILED
        return BuildReport(
            state=BuildState.SUCCEEDED if build.green else BuildState.FAILED,
            targets=tuple(
                TargetReport(name=name, state=target, exit_code=0 if build.green else 1)
                for name in build.targets
            ),
            message="" if build.green else "the noop runner was told this commit fails",
        )

    async def cancel(self, build_id: str) -> BuildState:
        return (await self.status(build_id)).state  # already over: nothing to stop

    async def get_log(self, build_id: str, target: str) -> LogChunk:
        if target not in self._build(build_id).targets:
            raise TargetNotFound(build_id, target)
        return LogChunk(content="")


@dataclass
class NoopExtensions:
    """Both servers and the objects behind them."""

    source_control: NoopSourceControl
    build_runner: NoopBuildRunner
    source_control_server: GrpcServer
    build_runner_server: GrpcServer

    @property
    def source_control_address(self) -> str:
        return self.source_control_server.address

    @property
    def build_runner_address(self) -> str:
        return self.build_runner_server.address


@contextlib.asynccontextmanager
async def noop_extensions(
    source_control: NoopSourceControl | None = None,
    build_runner: NoopBuildRunner | None = None,
) -> AsyncIterator[NoopExtensions]:
    """Serve a :class:`NoopSourceControl` and a :class:`NoopBuildRunner` (new ones unless
    given) on free loopback ports until the block ends."""
    sc = source_control or NoopSourceControl()
    runner = build_runner or NoopBuildRunner(sc)
    sc_server = await start_server(
        "127.0.0.1:0", [SourceControlServicer(sc).register], [SC_SERVICE]
    )
    try:
        runner_server = await start_server(
            "127.0.0.1:0", [BuildRunnerServicer(runner).register], [RUNNER_SERVICE]
        )
        try:
            yield NoopExtensions(sc, runner, sc_server, runner_server)
        finally:
            await runner_server.stop(0)
    finally:
        await sc_server.stop(0)
