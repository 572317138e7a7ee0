"""Read and update one git repository on this machine (a Queue's repository or a mirror).

Reads go through a libgit2 handle kept open for the server's lifetime
(:mod:`.handles`): no process per question. Moving a ref is one ``git
update-ref <ref> <new> <old>``, so git's own locking and reflog apply. Every
argument that comes from a caller has been validated before it gets here (hex
object names, ``names.branch_name`` branches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pygit2

from stovepipe.extensions.sourcecontrol.errors import (
    GitFailed,
    RepositoryUnusable,
    TimedOut,
)
from stovepipe.extensions.sourcecontrol.git.handles import HANDLES, HandleGone
from stovepipe.extensions.sourcecontrol.git.process import GitResult, GitTimeout, run_git
from stovepipe.extensions.sourcecontrol.git.remote_failures import summarize
from stovepipe.extensions.sourcecontrol.model import CommitInfo

T = TypeVar("T")
_OPENED: dict[Path, Path] = {}
"""Local repository path -> its git directory, once ``open_local`` has vetted it."""


@dataclass(frozen=True)
class GitRepository:
    """A repository by its git directory; ``display`` names it in messages."""

    git_dir: Path
    display: str
    timeout_s: float

    async def git(self, *args: str, stdin: bytes | None = None) -> GitResult:
        try:
            return await run_git(
                ["--git-dir", str(self.git_dir), *args], timeout_s=self.timeout_s, stdin=stdin
            )
        except GitTimeout as exc:
            raise TimedOut(f"git {args[0]} in {self.display}: {exc}") from exc

    async def checked(self, *args: str, stdin: bytes | None = None) -> GitResult:
        """Like ``git``, but a non-zero exit is ``GitFailed`` with git's message."""
        result = await self.git(*args, stdin=stdin)
        if not result.ok:
            raise GitFailed(f"git {args[0]} in {self.display} failed: {summarize(result.stderr)}")
        return result

    async def read(self, work: Callable[[pygit2.Repository], T], what: str) -> T:
        """Run ``work`` on this repository's libgit2 handle; ``what`` names it in errors."""
        try:
            handle = HANDLES.get(self.git_dir)
        except HandleGone:
            raise RepositoryUnusable(
                f"repository {self.display} is gone from the SourceControl server's machine"
            ) from None
        try:
            return await handle.read(work)
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise GitFailed(f"{what} in {self.display} failed: {exc}") from exc

    async def branch_commit(self, branch: str) -> str | None:
        """The commit ``refs/heads/<branch>`` points at, or ``None`` if there is no such branch."""

        def commit(repo: pygit2.Repository) -> str | None:
            ref = repo.references.get(f"refs/heads/{branch}")
            if ref is None:
                return None
            return str(ref.peel(pygit2.Commit).id)

        return await self.read(commit, f"reading branch {branch!r}")

    async def missing(self, *commits: str) -> set[str]:
        """Those of ``commits`` that are not commits in this repository's object store."""
        wanted = sorted(set(commits))
        if not wanted:
            return set()

        def absent(repo: pygit2.Repository) -> set[str]:
            gone = set()
            for sha in wanted:
                found = repo.get(sha)
                if found is None or found.type != pygit2.enums.ObjectType.COMMIT:
                    gone.add(sha)
            return gone

        return await self.read(absent, "looking up commits")

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is ``descendant`` or one of its ancestors."""

        def check(repo: pygit2.Repository) -> bool:
            a, d = repo[ancestor].id, repo[descendant].id
            return a == d or bool(repo.descendant_of(d, a))

        return await self.read(check, "ancestry check")

    async def commits_between(self, base: str | None, head: str, limit: int) -> list[str]:
        """Commits reachable from ``head`` and not from ``base``: the newest ``limit``,
        parents before children."""

        def walk(repo: pygit2.Repository) -> list[str]:
            walker = repo.walk(repo[head].id, pygit2.enums.SortMode.TOPOLOGICAL)
            if base:
                walker.hide(repo[base].id)
            newest = []
            for commit in walker:
                newest.append(str(commit.id))
                if len(newest) >= limit:
                    break
            return list(reversed(newest))

        return await self.read(walk, "listing commits")

    async def changed_paths(self, base: str, head: str) -> list[str]:
        """Paths whose entry differs between the two trees; a rename is its two paths."""

        def diff(repo: pygit2.Repository) -> list[str]:
            changes = _tree(repo, base).diff_to_tree(_tree(repo, head))
            paths = set()
            for delta in changes.deltas:
                paths.add(delta.old_file.path)
                paths.add(delta.new_file.path)
            return sorted(p for p in paths if p)

        return await self.read(diff, "comparing trees")

    async def all_paths(self, head: str) -> list[str]:
        def listing(repo: pygit2.Repository) -> list[str]:
            index = pygit2.Index()
            index.read_tree(_tree(repo, head))
            return sorted({entry.path for entry in index})

        return await self.read(listing, "listing the tree")

    async def describe(self, commit: str) -> CommitInfo:
        def description(repo: pygit2.Repository) -> CommitInfo:
            found = repo[commit].peel(pygit2.Commit)
            author = found.author
            name = _text(author.raw_name)
            email = _text(author.raw_email)
            return CommitInfo(
                time=datetime.fromtimestamp(found.commit_time, UTC),
                author=f"{name} <{email}>" if email else name,
                title=_subject(_text(found.raw_message)),
                short_name=found.short_id,
                revision=str(found.id),
            )

        return await self.read(description, f"describing {commit}")

    async def swap_branch(self, branch: str, new: str, old: str | None) -> bool:
        """Point ``branch`` at ``new`` if it still points at ``old`` (``None``: absent).

        False when another writer got there first; the caller re-reads and decides again.
        """
        expected = old if old is not None else "0" * len(new)
        result = await self.git(
            "update-ref", "-m", "stovepipe: promote", f"refs/heads/{branch}", new, expected
        )
        if result.ok:
            return True
        if await self.branch_commit(branch) != old:
            return False
        raise GitFailed(f"moving {branch!r} in {self.display} failed: {summarize(result.stderr)}")

    async def worktree_of(self, branch: str) -> str | None:
        """The working tree that has ``branch`` checked out, if any."""
        wanted = f"refs/heads/{branch}"

        def checked_out(repo: pygit2.Repository) -> str | None:
            if not repo.is_bare and repo.references["HEAD"].target == wanted:
                return str(Path(repo.workdir).resolve())
            for name in repo.list_worktrees():
                head = self.git_dir / "worktrees" / name / "HEAD"
                try:
                    text = head.read_text()
                except OSError:
                    continue
                if text.strip() == f"ref: {wanted}":
                    return str(repo.lookup_worktree(name).path)
            return None

        return await self.read(checked_out, "listing worktrees")


async def open_local(path: Path, display: str, timeout_s: float) -> GitRepository:
    """The repository at ``path`` itself (never one found in a parent directory).

    ``RepositoryUnusable`` when it is missing or not a repository. git vets a
    path once (ownership, ``safe.directory``, no parent directory's repository);
    later calls reuse the answer while that git directory is still there.
    """
    known = _OPENED.get(path)
    if known is not None:
        try:
            HANDLES.get(known)
            return GitRepository(known, display, timeout_s)
        except HandleGone:
            del _OPENED[path]
    try:
        result = await run_git(
            ["-C", str(path), "rev-parse", "--absolute-git-dir"],
            timeout_s=timeout_s,
            env={"GIT_CEILING_DIRECTORIES": str(path.parent)},
        )
    except GitTimeout as exc:
        raise TimedOut(f"opening {display}: {exc}") from exc
    if result.ok:
        git_dir = Path(result.stdout.decode().strip())
        _OPENED[path] = git_dir
        return GitRepository(git_dir, display, timeout_s)
    if "cannot change to" in result.stderr:
        raise RepositoryUnusable(
            f"repository {display} does not exist on the SourceControl server's machine"
        )
    if "dubious ownership" in result.stderr:
        raise RepositoryUnusable(
            f"repository {display} belongs to another user; git refuses to read it until it "
            "is listed in safe.directory for the user this server runs as"
        )
    raise RepositoryUnusable(f"{display} is not a git repository: {summarize(result.stderr)}")


def _tree(repo: pygit2.Repository, commit: str) -> pygit2.Tree:
    return repo[commit].peel(pygit2.Tree)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _subject(message: str) -> str:
    """git's ``%s``: the first paragraph of the message, its lines joined by spaces."""
    lines = []
    for line in message.lstrip("\n").splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)
