"""The runner's work directory: repository mirrors, per-build checkouts, logs.

Layout::

    <work_dir>/mirrors/<hash>.git     bare mirror of a repository, shared by builds
    <work_dir>/builds/<build id>/     checkout/ (a git worktree), home/ and tmp/ of a build
    <work_dir>/logs/<build id>/       one file per target that started
    <work_dir>/records/               one record per known build (``records.py``)

``work_dir`` is private to the runner (mode 0700). Checkouts are worktrees of
a mirror the runner owns, never of the repository the Queue names, so the
runner adds nothing to a repository someone else uses and a remote URL works
like a local path. Mirrors are kept between builds and fetched only when a
revision is missing. A build's directory goes when the build ends; at start-up
everything under ``builds/`` belongs to runs a previous process did not
finish, and is removed, as are the logs of builds without a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import tempfile
from collections import defaultdict
from pathlib import Path

from stovepipe.extensions.buildrunner.local.sandbox import BuildPaths

_ERROR_LINES = 3
_SAFE_REVISION = re.compile(r"[0-9A-Za-z._/^~@{}+][0-9A-Za-z._/^~@{}+-]*")


class CheckoutError(Exception):
    """A revision could not be checked out; the message is safe to show in a report."""


def _git_environment() -> dict[str, str]:
    """The runner's own environment (it may need credentials to fetch), never prompting."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


async def _git(*args: str, timeout_s: float) -> None:
    """Run git; ``CheckoutError`` with its last stderr lines when it fails or hangs.

    stderr goes to a temporary file rather than a pipe: on Python 3.11 waiting
    for a process also waits for every holder of its pipes, and git may leave
    a helper behind.
    """
    with tempfile.TemporaryFile() as stderr:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=_git_environment(),
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            if isinstance(exc, TimeoutError):
                raise CheckoutError(f"git timed out after {timeout_s:.0f}s") from None
            raise
        if process.returncode != 0:
            stderr.seek(0)
            text = stderr.read(64 * 1024).decode(errors="replace")
            lines = text.strip().splitlines()[-_ERROR_LINES:]
            raise CheckoutError("; ".join(lines) or f"git exited with {process.returncode}")


async def _git_succeeds(*args: str, timeout_s: float) -> bool:
    try:
        await _git(*args, timeout_s=timeout_s)
    except CheckoutError:
        return False
    return True


def _make_removable(path: str) -> None:
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), stat.S_IRWXU)


def _remove_tree(path: Path) -> None:
    """Remove a tree even when a target left read-only directories in it."""
    if not path.exists():
        return
    _make_removable(str(path))
    shutil.rmtree(path, ignore_errors=True)


class Workspace:
    """Owns ``work_dir``; every method is safe to call concurrently for different builds."""

    def __init__(self, root: Path, *, git_timeout_s: float = 600.0) -> None:
        # Absolute and without symlinks: sandboxes mount its parts at these very paths.
        self.root = root.resolve()
        self._git_timeout = git_timeout_s
        self._mirrors = self.root / "mirrors"
        self._builds = self.root / "builds"
        self._logs = self.root / "logs"
        self.records_dir = self.root / "records"
        self._locks: defaultdict[Path, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refuses_fetch_by_id: set[Path] = set()
        """Mirrors whose remote would not serve a commit by id (they get full fetches)."""

    @property
    def builds_dir(self) -> Path:
        return self._builds

    def build_dir(self, build_id: str) -> Path:
        return self._builds / build_id

    def checkout_dir(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "checkout"

    def home_dir(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "home"

    def tmp_dir(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "tmp"

    def log_name(self, build_id: str, target_index: int) -> str:
        """The log's path relative to ``work_dir``, as build records keep it."""
        return f"logs/{build_id}/{target_index}.log"

    def log_path(self, build_id: str, target_index: int) -> Path:
        return self.root / self.log_name(build_id, target_index)

    def mirror_dir(self, repository: str) -> Path:
        digest = hashlib.sha256(repository.encode()).hexdigest()[:24]
        return self._mirrors / f"{digest}.git"

    def build_paths(self, build_id: str, repository: str) -> BuildPaths:
        """What the build's targets see of the work directory."""
        return BuildPaths(
            work_dir=self.root,
            checkout=self.checkout_dir(build_id),
            home=self.home_dir(build_id),
            tmp=self.tmp_dir(build_id),
            mirror=self.mirror_dir(repository),
        )

    async def prepare(self, keep_logs_of: frozenset[str] = frozenset()) -> None:
        """Create the layout (private to the runner) and remove what runs of an earlier
        process left behind; the logs of ``keep_logs_of`` builds stay."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for directory in (self._mirrors, self._builds, self._logs, self.records_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        stale = [*self._builds.iterdir()]
        stale += [p for p in self._logs.iterdir() if p.name not in keep_logs_of]
        stale += [p for p in self._mirrors.iterdir() if not p.name.endswith(".git")]
        for path in stale:
            await asyncio.to_thread(_remove_tree, path)
        for mirror in self._mirrors.glob("*.git"):
            await _git_succeeds("--git-dir", str(mirror), "worktree", "prune", timeout_s=60)

    async def check_out(self, build_id: str, repository: str, revision: str) -> Path:
        """A fresh worktree of ``revision`` for the build, plus its empty home directory."""
        if not _SAFE_REVISION.fullmatch(revision):
            raise CheckoutError(f"refusing to check out revision {revision!r}")
        mirror = self.mirror_dir(repository)
        checkout = self.checkout_dir(build_id)
        async with self._locks[mirror]:
            await self._ensure_revision(mirror, repository, revision)
            self.build_dir(build_id).mkdir(parents=True)
            self.home_dir(build_id).mkdir()
            self.tmp_dir(build_id).mkdir()
            await _git(
                "--git-dir",
                str(mirror),
                "worktree",
                "add",
                "--detach",
                "--quiet",
                str(checkout),
                f"{revision}^{{commit}}",
                timeout_s=self._git_timeout,
            )
        return checkout

    async def release(self, build_id: str, repository: str) -> None:
        """Remove the build's directory and the mirror's record of its worktree."""
        await asyncio.to_thread(_remove_tree, self.build_dir(build_id))
        mirror = self.mirror_dir(repository)
        if await asyncio.to_thread(mirror.exists):
            async with self._locks[mirror]:
                await _git_succeeds("--git-dir", str(mirror), "worktree", "prune", timeout_s=60)

    async def forget_logs(self, build_id: str) -> None:
        await asyncio.to_thread(_remove_tree, self._logs / build_id)

    async def _ensure_revision(self, mirror: Path, repository: str, revision: str) -> None:
        if not await asyncio.to_thread(mirror.exists):
            await self._clone(mirror, repository)
        if await self._has(mirror, revision):
            return
        # Only the wanted commit first: a fetch of every ref grows with the branch
        # count (9x at 2,000 branches) and is paid by every build of a new head. A
        # server that refuses to serve a commit by id gets the full fetch instead.
        if mirror not in self._refuses_fetch_by_id:
            await _git_succeeds(
                "--git-dir",
                str(mirror),
                "fetch",
                "--quiet",
                "--no-tags",
                "origin",
                revision,
                timeout_s=self._git_timeout,
            )
            if await self._has(mirror, revision):
                return
            self._refuses_fetch_by_id.add(mirror)
        await _git_succeeds(
            "--git-dir",
            str(mirror),
            "fetch",
            "--quiet",
            "--prune",
            "origin",
            timeout_s=self._git_timeout,
        )
        if not await self._has(mirror, revision):
            raise CheckoutError(f"revision {revision} is not in the repository")

    async def _has(self, mirror: Path, revision: str) -> bool:
        return await _git_succeeds(
            "--git-dir", str(mirror), "cat-file", "-e", f"{revision}^{{commit}}", timeout_s=60
        )

    async def _clone(self, mirror: Path, repository: str) -> None:
        partial = mirror.with_suffix(".partial")
        await asyncio.to_thread(_remove_tree, partial)
        try:
            await _git(
                "clone",
                "--mirror",
                "--quiet",
                "--",
                repository,
                str(partial),
                timeout_s=self._git_timeout,
            )
        except CheckoutError as exc:
            await asyncio.to_thread(_remove_tree, partial)
            raise CheckoutError(f"could not clone the repository: {exc}") from None
        partial.rename(mirror)
