"""Open repositories kept for the server's lifetime, read in process through libgit2 (pygit2).

Why: every question used to start a ``git`` process (17 per head), which cost
more CPU than everything else the pipeline does for a head. A libgit2 handle
answers refs, object existence, ancestry, history, trees and diffs in
process; git itself still does what touches the network or moves a ref
(fetch, push, ``update-ref``), so the rules git enforces there stay git's.

Each handle has its own single worker thread: libgit2 calls block, so they
never run on the event loop, and one repository object is never used by two
threads at once. Concurrent callers queue on that thread, in order.

A handle is only served while its git directory is the one it opened (same
inode) and its pack directory has not changed: a repository deleted, or
replaced by another at the same path, gets a fresh handle or the error of
opening it, and after a fetch or a ``gc`` the handle is opened again, because
libgit2 keeps the packs it opened mapped (a commit a ``gc`` dropped would
still be found in the deleted pack). libgit2's object cache is off for the
same reason: an object must be read from disk to be said to exist. Loose refs
are re-read on every lookup and ``packed-refs`` is checked for changes, so a
push or a force-push by another process is seen at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pygit2

T = TypeVar("T")


class HandleGone(Exception):
    """The git directory is gone or was replaced since the handle was opened."""


pygit2.settings.enable_caching(False)


@dataclass
class Handle:
    """One open repository and the thread that reads it."""

    git_dir: Path
    identity: tuple[int, int]
    repository: pygit2.Repository
    executor: ThreadPoolExecutor

    async def read(self, work: Callable[[pygit2.Repository], T]) -> T:
        """Run ``work`` on this repository's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, work, self.repository)


class Handles:
    """The open handles, by git directory."""

    def __init__(self) -> None:
        self._handles: dict[Path, Handle] = {}
        self._lock = threading.Lock()

    def get(self, git_dir: Path) -> Handle:
        """The handle of ``git_dir``, opened on first use or after it was replaced.

        ``HandleGone`` when there is no repository there any more."""
        try:
            os.stat(git_dir / "HEAD")
            identity = (os.stat(git_dir).st_ino, os.stat(git_dir / "objects" / "pack").st_mtime_ns)
        except OSError as exc:
            self.forget(git_dir)
            raise HandleGone(str(git_dir)) from exc
        with self._lock:
            handle = self._handles.get(git_dir)
            if handle is not None and handle.identity == identity:
                return handle
            if handle is not None:
                handle.executor.shutdown(wait=False)
            try:
                repository = pygit2.Repository(str(git_dir))
            except pygit2.GitError as exc:
                raise HandleGone(str(git_dir)) from exc
            handle = Handle(
                git_dir,
                identity,
                repository,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="libgit2"),
            )
            self._handles[git_dir] = handle
            return handle

    def forget(self, git_dir: Path) -> None:
        with self._lock:
            handle = self._handles.pop(git_dir, None)
        if handle is not None:
            handle.executor.shutdown(wait=False)

    def close(self) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.executor.shutdown(wait=False)


HANDLES = Handles()
"""The process's handles: repositories are per machine, so one table serves every caller."""
