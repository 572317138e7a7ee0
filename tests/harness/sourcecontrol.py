"""One vocabulary for the contract suite, three ways to make it true.

A harness changes history (commits, new branches, force pushes, garbage
collection) and exposes a ``SourceControl`` that must answer questions about
it. ``FakeHarness`` drives the in-process fake; ``GitHarness`` drives real
repositories behind the real git server, reached through the client over a
real gRPC channel: either a local path read in place or a ``file://`` URL of a
bare "remote" that the server mirrors. The tests only speak the vocabulary and
never look inside a URI, so each asserts the same behaviour of all three.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sourcecontrol_git import AUTHOR, WorkRepo, collect_garbage, init_bare

from stovepipe.extensions.sourcecontrol import QueueSource, SourceControl
from stovepipe.extensions.sourcecontrol.fake import FakeSourceControl

QUEUE = "demo/main"
PROMOTION_REF = "verified-main"

CALC_GOOD = "def add(a, b):\n    return a + b\n"
CALC_BROKEN = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\nassert add(2, 3) == 5\n"


class Harness(Protocol):
    sc: SourceControl
    source: QueueSource
    foreign: QueueSource
    """Another repository that exists and has history on ``main``."""
    missing: QueueSource
    """A repository that does not exist."""

    def on(self, branch: str) -> QueueSource:
        """The source of a Queue that follows ``branch`` of the same repository."""
        ...

    async def commit(self, branch: str, files: Mapping[str, str | None], title: str) -> str:
        """Commit on an existing branch (or on ``main`` from nothing); the revision."""
        ...

    async def branch(self, name: str, revision: str) -> None: ...

    async def force_push(self, branch: str, revision: str) -> None: ...

    async def collect_garbage(self) -> None:
        """Forget unreachable commits everywhere the implementation could still find them."""
        ...

    async def revision(self, branch: str) -> str | None:
        """Where ``branch`` points in the authoritative repository."""
        ...

    async def remove_repository(self) -> None:
        """Delete the authoritative repository (a mirror of it may stay behind)."""
        ...


@dataclass(frozen=True)
class History:
    """Green, broken, fixed on ``main``; a ``release`` branch off the green commit."""

    green: str
    broken: str
    fix: str
    release: str


async def build_history(harness: Harness) -> History:
    green = await harness.commit(
        "main",
        {"src/calc.py": CALC_GOOD, "tests/test_calc.py": TEST_CALC, "README.md": "# calc\n"},
        "add calculator",
    )
    broken = await harness.commit("main", {"src/calc.py": CALC_BROKEN}, "break add()")
    fix = await harness.commit(
        "main", {"src/calc.py": CALC_GOOD, "docs/notes.md": "fixed\n"}, "fix add()"
    )
    await harness.branch("release", green)
    release = await harness.commit("release", {"CHANGELOG.md": "1.0\n"}, "release 1.0")
    return History(green=green, broken=broken, fix=fix, release=release)


class FakeHarness:
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

    def __init__(self, sc: SourceControl, tmp_path: Path, *, remote: bool) -> None:
        self.sc = sc
        self._cache = tmp_path / "cache"
        other_remote = init_bare(tmp_path / "other.git") if remote else None
        other = WorkRepo(tmp_path / "other", remote=other_remote)
        other.commit("main", {"other.txt": "x"}, "other")
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
        return await asyncio.to_thread(self._work.commit, branch, files, title)

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
