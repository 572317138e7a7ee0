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
from stovepipe.testing.contracts.sourcecontrol import QUEUE


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

    def __init__(self, sc: SourceControl, tmp_path: Path, *, remote: bool) -> None:
        self.sc = sc
        self._cache = tmp_path / "cache"
        other_remote = init_bare(tmp_path / "other.git") if remote else None
        other = WorkRepo(tmp_path / "other", remote=other_remote)
        other.commit({"other.txt": "x"}, "other")
        if remote:
            self._work = WorkRepo(tmp_path / "work", remote=init_bare(tmp_path / "calc.git"))
            location = f"file://{tmp_path / 'calc.git'}"
            self.foreign = QueueSource("other/main", f"file://{other_remote}", "main")
            self.missing = QueueSource("gone/main", f"file://{tmp_path / 'gone.git'}", "main")
        else:
            self._work = WorkRepo(tmp_path / "calc")
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
