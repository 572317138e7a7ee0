"""Bare mirrors of remote repositories, kept in a cache directory.

One mirror per repository key (``<cache>/mirrors/<key>.git``), created on
first use and filled by fetching exactly the branches asked about, so a
monorepo with thousands of branches costs no more than the ones Queues follow.
The remote URL is passed on each command line and never written into the
mirror's configuration, so no credential lands on disk; the mirror's
``description`` file holds the credential-free location for an operator.

Fetches of one mirror are serialised (concurrent git fetches race on ref
locks and on garbage collection) and shared between the calls waiting for
them; reads never wait for them. History that a force push
dropped stays readable in the mirror until git's own garbage collection
expires it, which keeps ancestry answers exact for a while after a rewrite.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import defaultdict
from pathlib import Path

from stovepipe.extensions.sourcecontrol.errors import RepositoryUnusable, Unavailable
from stovepipe.extensions.sourcecontrol.git.location import Location
from stovepipe.extensions.sourcecontrol.git.process import GitResult, GitTimeout, run_git
from stovepipe.extensions.sourcecontrol.git.remote_failures import remote_failure, summarize
from stovepipe.extensions.sourcecontrol.git.repository import GitRepository

_FOREGROUND_GC = ("-c", "gc.autoDetach=false", "-c", "maintenance.autoDetach=false")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/stovepipe/git`` (``~/.cache/stovepipe/git`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stovepipe" / "git"


class MirrorCache:
    """Creates, fetches into and pushes from the mirrors under ``cache_dir``."""

    def __init__(self, cache_dir: Path, *, local_timeout_s: float, network_timeout_s: float):
        self._root = cache_dir / "mirrors"
        self._local_timeout_s = local_timeout_s
        self._network_timeout_s = network_timeout_s
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queued: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def open(self, location: Location) -> GitRepository:
        """The mirror of ``location``, created empty if this is the first time."""
        path = self._root / f"{location.key}.git"
        mirror = GitRepository(path, location.display, self._local_timeout_s)
        if await asyncio.to_thread(path.is_dir):
            return mirror
        async with self._locks[location.key]:
            if not await asyncio.to_thread(path.is_dir):
                await self._create(path, location)
        return mirror

    async def fetch(self, location: Location, mirror: GitRepository, branch: str) -> None:
        """Bring ``branch`` of the remote into the mirror, following force pushes.

        The fetch that serves a call always starts after the call arrived, so
        it sees every push that happened before. Calls that arrive while that
        fetch has not started yet share it. A fetch outlives callers that stop
        waiting (it is bounded by the network timeout instead), so the slow
        first fetch of a large repository completes for the next caller rather
        than starting over each time a deadline passes.
        """
        key = (location.key, branch)
        fetch = self._queued.get(key)
        if fetch is None:
            fetch = asyncio.create_task(
                self._fetch_after(key, self._running.get(key), location, mirror, branch)
            )
            fetch.add_done_callback(_observe)
            self._queued[key] = fetch
        await asyncio.shield(fetch)

    async def close(self) -> None:
        """Stop every fetch still running (killing its git) and wait for them to end."""
        fetches = [*self._queued.values(), *self._running.values()]
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)

    async def _fetch_after(
        self,
        key: tuple[str, str],
        previous: asyncio.Task[None] | None,
        location: Location,
        mirror: GitRepository,
        branch: str,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        current = self._queued.pop(key)
        self._running[key] = current
        try:
            async with self._locks[location.key]:
                await self._fetch_now(location, mirror, branch)
        finally:
            if self._running.get(key) is current:
                del self._running[key]

    async def _fetch_now(self, location: Location, mirror: GitRepository, branch: str) -> None:
        result = await self._network(
            f"fetching {branch!r}",
            location,
            *_FOREGROUND_GC,
            "--git-dir",
            str(mirror.git_dir),
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            location.argument,
            f"+refs/heads/{branch}:refs/heads/{branch}",
        )
        if not result.ok:
            raise remote_failure(f"fetching {branch!r}", location, result.stderr)

    async def remote_branch(self, location: Location, branch: str) -> str | None:
        """Where ``branch`` points on the remote right now, or ``None``."""
        result = await self._network(
            f"listing {branch!r}",
            location,
            "ls-remote",
            "--quiet",
            location.argument,
            f"refs/heads/{branch}",
        )
        if not result.ok:
            raise remote_failure(f"listing {branch!r}", location, result.stderr)
        for line in result.lines():
            commit, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return commit
        return None

    async def push(
        self, location: Location, mirror: GitRepository, commit: str, branch: str, old: str | None
    ) -> bool:
        """Point the remote's ``branch`` at ``commit`` if it still points at ``old``.

        False when the lease failed (someone moved the branch since we looked).
        """
        result = await self._network(
            f"pushing {branch!r}",
            location,
            "--git-dir",
            str(mirror.git_dir),
            "push",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{old or ''}",
            location.argument,
            f"{commit}:refs/heads/{branch}",
        )
        if result.ok:
            return True
        if "stale info" in result.stdout.decode("utf-8", "replace") + result.stderr:
            return False
        raise remote_failure(f"pushing {branch!r}", location, result.stderr)

    async def _network(self, action: str, location: Location, *args: str) -> GitResult:
        try:
            return await run_git(list(args), timeout_s=self._network_timeout_s)
        except GitTimeout as exc:
            raise Unavailable(f"{action} from {location.display}: {exc}; retry later") from exc

    async def _create(self, path: Path, location: Location) -> None:
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            await asyncio.to_thread(staging.parent.mkdir, parents=True, exist_ok=True)
            result = await run_git(
                ["init", "--bare", "--quiet", str(staging)], timeout_s=self._local_timeout_s
            )
            if not result.ok:
                raise RepositoryUnusable(
                    f"cannot create a mirror of {location.display} in {self._root}: "
                    f"{summarize(result.stderr)}"
                )
            await asyncio.to_thread(
                (staging / "description").write_text, f"mirror of {location.display}\n"
            )
            await asyncio.to_thread(staging.rename, path)
        except OSError as exc:
            if await asyncio.to_thread(path.is_dir):
                return
            raise RepositoryUnusable(
                f"cannot create a mirror of {location.display} in {self._root}: {exc}"
            ) from exc
        finally:
            if await asyncio.to_thread(staging.exists):
                await asyncio.to_thread(shutil.rmtree, staging, True)


def _observe(fetch: asyncio.Task[None]) -> None:
    """Mark a fetch's failure as seen: every caller may have stopped waiting for it."""
    if not fetch.cancelled():
        fetch.exception()
