"""Our implementations of the SourceControl contract suite's ``Harness``.

``FakeHarness`` drives the in-process fake; ``GitHarness`` drives real
repositories behind the real git server, reached through the client over a
real gRPC channel: either a local path read in place or a ``file://`` URL of a
bare "remote" that the server mirrors. The suite itself is public:
:mod:`stovepipe.testing.contracts.sourcecontrol`.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.git_repos import AUTHOR, WorkRepo, collect_garbage, init_bare
from stovepipe.extensions.sourcecontrol import QueueSource, SourceControl
from stovepipe.extensions.sourcecontrol.fake import FakeSourceControl
from stovepipe.extensions.sourcecontrol.git import Promotion, ServedRepository
from stovepipe.testing.contracts.sourcecontrol import PROMOTION_REF, QUEUE, History, build_history


def promoting(repository: str) -> ServedRepository:
    """``repository`` on the git server's allow-list, where a Queue following ``main``
    promotes to ``PROMOTION_REF``."""
    return ServedRepository(repository, frozenset({Promotion("main", PROMOTION_REF)}))


class FakeHarness:
    author = AUTHOR

    def __init__(self) -> None:
        self.fake = FakeSourceControl()
        self.sc: SourceControl = self.fake
        self._repo = self.fake.repository("/srv/git/calc")
        other = self.fake.repository("/srv/git/other")
        other.advance("main", {"other.txt": "x"}, title="other")
        self.source = QueueSource(QUEUE, "/srv/git/calc", "main")
        self.foreign = QueueSource("other/main", "/srv/git/other", "main")
        self.missing = QueueSource("gone/main", "/srv/git/gone", "main")

    def on(self, branch: str) -> QueueSource:
        return QueueSource(f"demo/{branch}", self.source.repository, branch)

    async def commit(self, branch: str, files: Mapping[str, str | None], title: str) -> str:
        return self._repo.advance(branch, files, title=title, author=AUTHOR)

    async def branch(self, name: str, revision: str) -> None:
        self._repo.move_ref(name, revision)

    async def force_push(self, branch: str, revision: str) -> None:
        self._repo.force_push(branch, revision)

    async def collect_garbage(self) -> None:
        self._repo.collect_garbage()

    async def revision(self, branch: str) -> str | None:
        return self._repo.head(branch)

    async def remove_repository(self) -> None:
        self.fake.remove_repository(self.source.repository)


class GitHarness:
    """``remote=False``: the server reads ``repo`` in place. ``remote=True``: commits are
    pushed to a bare repository the server knows only by its ``file://`` URL."""

    author = AUTHOR

    def __init__(
        self, sc: SourceControl, tmp_path: Path, *, remote: bool, adopt: bool = False
    ) -> None:
        """Repositories made in ``tmp_path``; with ``adopt``, the ones a copy of another
        GitHarness's directory left there (see :func:`git_history_template`)."""
        self.sc = sc
        self._cache = tmp_path / "cache"
        other_remote = tmp_path / "other.git" if remote else None
        calc_remote = tmp_path / "calc.git" if remote else None
        if not adopt:
            for bare in (other_remote, calc_remote):
                if bare is not None:
                    init_bare(bare)
        other = WorkRepo(tmp_path / "other", remote=other_remote, adopt=adopt)
        if not adopt:
            other.commit({"other.txt": "x"}, "other")
        if remote:
            self._work = WorkRepo(tmp_path / "work", remote=calc_remote, adopt=adopt)
            location = f"file://{calc_remote}"
            self.foreign = QueueSource("other/main", f"file://{other_remote}", "main")
            self.missing = QueueSource("gone/main", f"file://{tmp_path / 'gone.git'}", "main")
        else:
            self._work = WorkRepo(tmp_path / "calc", adopt=adopt)
            location = str(tmp_path / "calc")
            self.foreign = QueueSource("other/main", str(other.path), "main")
            self.missing = QueueSource("gone/main", str(tmp_path / "gone"), "main")
        self.source = QueueSource(QUEUE, location, "main")

    def on(self, branch: str) -> QueueSource:
        return QueueSource(f"demo/{branch}", self.source.repository, branch)

    async def commit(self, branch: str, files: Mapping[str, str | None], title: str) -> str:
        return await asyncio.to_thread(self._work.commit, files, title, branch=branch)

    async def branch(self, name: str, revision: str) -> None:
        await asyncio.to_thread(self._work.branch, name, revision)

    async def force_push(self, branch: str, revision: str) -> None:
        await asyncio.to_thread(self._work.force_push, branch, revision)

    async def collect_garbage(self) -> None:
        await asyncio.to_thread(self._work.collect_garbage)
        for mirror in await asyncio.to_thread(sorted, self._cache.glob("mirrors/*.git")):
            await asyncio.to_thread(collect_garbage, mirror)

    async def revision(self, branch: str) -> str | None:
        return await asyncio.to_thread(self._work.revision, branch)

    async def remove_repository(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self._work.remote or self._work.path)


async def git_history_template(root: Path, *, remote: bool) -> History:
    """The contract suite's history, built once in ``root`` for GitHarness copies.

    Building it takes some forty git commands; a test copies ``root`` into its own
    directory and adopts the copy (``GitHarness(..., adopt=True)``) instead. The
    fake stands in for the server: building history asks nothing of it.
    """
    return await build_history(GitHarness(FakeSourceControl(), root, remote=remote))
