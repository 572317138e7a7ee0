"""Real git repositories for the SourceControl tests, driven through the git CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

AUTHOR_NAME = "Stovepipe Tests"
AUTHOR_EMAIL = "tests@stovepipe.invalid"
AUTHOR = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip()


def init_bare(path: Path) -> Path:
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    return path


def collect_garbage(git_dir: Path) -> None:
    """Drop every commit no ref reaches, now (reflogs included)."""
    git("--git-dir", str(git_dir), "reflog", "expire", "--expire=now", "--all")
    git("--git-dir", str(git_dir), "gc", "--quiet", "--prune=now")


class WorkRepo:
    """A repository with a working tree that tests commit to; it stays on ``main``
    between calls, and may push every change to a ``remote``."""

    def __init__(self, path: Path, *, remote: Path | None = None) -> None:
        self.path = path
        self.remote = remote
        path.mkdir(parents=True)
        git("init", "--quiet", "--initial-branch=main", cwd=path)
        if remote is not None:
            git("remote", "add", "origin", str(remote), cwd=path)

    def commit(self, branch: str, files: Mapping[str, str | None], title: str) -> str:
        """Change ``files`` on ``branch`` (``None`` deletes a path) and commit; the new sha."""
        self._on(branch)
        for relative, content in files.items():
            target = self.path / relative
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", title, cwd=self.path)
        sha = git("rev-parse", "HEAD", cwd=self.path)
        self._publish(branch)
        self._on("main")
        return sha

    def branch(self, name: str, revision: str) -> None:
        git("branch", name, revision, cwd=self.path)
        self._publish(name)

    def force_push(self, branch: str, revision: str) -> None:
        """Point ``branch`` at ``revision`` whatever it was, as a force push does."""
        self._on(branch)
        git("reset", "--quiet", "--hard", revision, cwd=self.path)
        self._publish(branch)
        self._on("main")

    def revision(self, branch: str) -> str | None:
        """Where ``branch`` points in the authoritative repository (the remote, if any)."""
        where = ["--git-dir", str(self.remote)] if self.remote else ["-C", str(self.path)]
        result = subprocess.run(
            ["git", *where, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout.strip() or None

    def collect_garbage(self) -> None:
        collect_garbage(self.path / ".git")
        if self.remote is not None:
            collect_garbage(self.remote)

    def _on(self, branch: str) -> None:
        if git("symbolic-ref", "--short", "HEAD", cwd=self.path) != branch:
            git("checkout", "--quiet", branch, cwd=self.path)

    def _publish(self, branch: str) -> None:
        if self.remote is not None:
            git("push", "--quiet", "--force", "origin", f"refs/heads/{branch}", cwd=self.path)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (dead, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def read_pid(path: Path) -> int | None:
    """The pid a helper script wrote to ``path``, once it has."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def eventually(condition: Callable[[], bool], *, what: str, deadline_s: float = 30.0) -> None:
    """Wait until ``condition()`` holds, failing with ``what`` after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up after {deadline_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
