"""Real git repositories for the tests, driven through the git CLI.

:class:`WorkRepo` is the one repository helper of the suite: a working tree
tests commit to, optionally pushing every change to a bare ``remote`` that
stands for the server everyone else reads (the SourceControl extension, the
runner, the invariant checks). Commits are serialised, so threads
(``asyncio.to_thread``) may commit to one repository at once.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

AUTHOR_NAME = "Stovepipe Tests"
AUTHOR_EMAIL = "tests@stovepipe.invalid"
AUTHOR = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"
IDENTITY = {
    f"GIT_{role}_{part}": value
    for role in ("AUTHOR", "COMMITTER")
    for part, value in (("NAME", AUTHOR_NAME), ("EMAIL", AUTHOR_EMAIL))
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git (as the tests' author); its stripped stdout. ``CalledProcessError`` on failure."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
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
    between calls, and pushes every change to ``remote`` when there is one."""

    def __init__(self, path: Path, *, remote: Path | None = None, adopt: bool = False) -> None:
        """A new repository at ``path``; with ``adopt``, the one already there (a copy of
        another WorkRepo, say), whose origin is then pointed at ``remote``."""
        self.path = path
        self.remote = remote
        self._lock = threading.Lock()
        if adopt:
            if remote is not None:
                git("remote", "set-url", "origin", str(remote), cwd=path)
            return
        path.mkdir(parents=True)
        git("init", "--quiet", "--initial-branch=main", cwd=path)
        git("config", "commit.gpgsign", "false", cwd=path)
        if remote is not None:
            git("remote", "add", "origin", str(remote), cwd=path)

    @property
    def served(self) -> Path:
        """The repository others read: the remote, or this one when there is none."""
        return self.remote if self.remote is not None else self.path

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.path)

    def commit(
        self, files: Mapping[str, str | None], title: str = "change", *, branch: str = "main"
    ) -> str:
        """Change ``files`` on ``branch`` (``None`` deletes a path), commit and publish;
        the new sha."""
        with self._lock:
            self._on(branch)
            for relative, content in files.items():
                target = self.path / relative
                if content is None:
                    target.unlink(missing_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content)
            self.git("add", "--all")
            self.git("commit", "--quiet", "--allow-empty", "-m", title)
            sha = self.git("rev-parse", "HEAD")
            self._publish(branch)
            self._on("main")
            return sha

    def touch(self, *paths: str) -> dict[str, str]:
        """New content for each path, so the next commit changes exactly these."""
        return {p: f"{uuid.uuid4()}\n" for p in paths}

    def branch(self, name: str, revision: str) -> None:
        with self._lock:
            self.git("branch", "--force", name, revision)
            self._publish(name)

    def force_push(self, branch: str, revision: str) -> None:
        """Point ``branch`` at ``revision`` whatever it was, as a force push does."""
        with self._lock:
            self._on(branch)
            self.git("reset", "--quiet", "--hard", revision)
            self._publish(branch)
            self._on("main")

    def revision(self, branch: str) -> str | None:
        """Where ``branch`` points in the served repository (the remote, if any)."""
        try:
            return git("--git-dir", str(self._git_dir(self.served)), "rev-parse", "--verify",
                       "--quiet", f"refs/heads/{branch}") or None  # fmt: skip
        except subprocess.CalledProcessError:
            return None

    def collect_garbage(self) -> None:
        collect_garbage(self.path / ".git")
        if self.remote is not None:
            collect_garbage(self.remote)

    def _on(self, branch: str) -> None:
        if self.git("symbolic-ref", "--short", "HEAD") != branch:
            self.git("checkout", "--quiet", branch)

    def _publish(self, branch: str) -> None:
        if self.remote is not None:
            self.git("push", "--quiet", "--force", "origin", f"refs/heads/{branch}")

    def _git_dir(self, repository: Path) -> Path:
        return repository if repository == self.remote else repository / ".git"
