"""Read and update one git repository on this machine (a Queue's repository or a mirror).

Only plumbing commands are used, whose output does not depend on a user's
configuration, and every argument that comes from a caller has been validated
before it gets here (hex object names, ``names.branch_name`` branches).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stovepipe.extensions.sourcecontrol.errors import (
    GitFailed,
    RepositoryUnusable,
    TimedOut,
)
from stovepipe.extensions.sourcecontrol.git.process import GitResult, GitTimeout, run_git
from stovepipe.extensions.sourcecontrol.git.remote_failures import summarize
from stovepipe.extensions.sourcecontrol.model import CommitInfo

_DESCRIBE_FORMAT = "%H%x00%h%x00%ct%x00%an%x00%ae%x00%s"


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

    async def branch_commit(self, branch: str) -> str | None:
        """The commit ``refs/heads/<branch>`` points at, or ``None`` if there is no such branch."""
        result = await self.git(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"
        )
        if result.returncode == 1 and not result.stdout.strip():
            return None
        if not result.ok:
            raise GitFailed(
                f"reading branch {branch!r} of {self.display}: {summarize(result.stderr)}"
            )
        return result.stdout.decode().strip()

    async def missing(self, *commits: str) -> set[str]:
        """Those of ``commits`` that are not commits in this repository's object store."""
        wanted = sorted(set(commits))
        if not wanted:
            return set()
        result = await self.checked(
            "cat-file",
            "--batch-check=%(objectname) %(objecttype)",
            stdin="".join(f"{commit}\n" for commit in wanted).encode(),
        )
        present = {
            fields[0]
            for fields in (line.split() for line in result.lines())
            if len(fields) == 2 and fields[1] == "commit"
        }
        return set(wanted) - present

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = await self.git("merge-base", "--is-ancestor", ancestor, descendant)
        if result.returncode in (0, 1):
            return result.returncode == 0
        raise GitFailed(f"ancestry check in {self.display} failed: {summarize(result.stderr)}")

    async def commits_between(self, base: str | None, head: str, limit: int) -> list[str]:
        """Commits reachable from ``head`` and not from ``base``: the newest ``limit``,
        parents before children."""
        excluded = [f"^{base}"] if base else []
        result = await self.checked(
            "rev-list", "--topo-order", f"--max-count={limit}", head, *excluded, "--"
        )
        return list(reversed(result.lines()))

    async def changed_paths(self, base: str, head: str) -> list[str]:
        """Paths whose entry differs between the two trees; a rename is its two paths."""
        result = await self.checked(
            "diff-tree", "-r", "-z", "--name-only", "--no-renames", base, head, "--"
        )
        return _nul_separated(result.stdout)

    async def all_paths(self, head: str) -> list[str]:
        result = await self.checked("ls-tree", "-r", "-z", "--name-only", "--full-tree", head, "--")
        return _nul_separated(result.stdout)

    async def describe(self, commit: str) -> CommitInfo:
        result = await self.checked(
            "log", "-1", "--no-show-signature", f"--format={_DESCRIBE_FORMAT}", commit, "--"
        )
        fields = result.stdout.decode("utf-8", "replace").rstrip("\n").split("\0")
        if len(fields) != 6:
            raise GitFailed(f"unexpected description of {commit} from {self.display}")
        full, short, seconds, name, email, title = fields
        return CommitInfo(
            time=datetime.fromtimestamp(int(seconds), UTC),
            author=f"{name} <{email}>" if email else name,
            title=title,
            short_name=short,
            revision=full,
        )

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
        result = await self.checked("worktree", "list", "--porcelain")
        tree = None
        for line in result.lines():
            if line.startswith("worktree "):
                tree = line.removeprefix("worktree ")
            elif line == f"branch refs/heads/{branch}":
                return tree
        return None


async def open_local(path: Path, display: str, timeout_s: float) -> GitRepository:
    """The repository at ``path`` itself (never one found in a parent directory).

    ``RepositoryUnusable`` when it is missing or not a repository.
    """
    try:
        result = await run_git(
            ["-C", str(path), "rev-parse", "--absolute-git-dir"],
            timeout_s=timeout_s,
            env={"GIT_CEILING_DIRECTORIES": str(path.parent)},
        )
    except GitTimeout as exc:
        raise TimedOut(f"opening {display}: {exc}") from exc
    if result.ok:
        return GitRepository(Path(result.stdout.decode().strip()), display, timeout_s)
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


def _nul_separated(output: bytes) -> list[str]:
    return sorted({p for p in output.decode("utf-8", "replace").split("\0") if p})
