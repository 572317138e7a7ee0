"""The gate path's read cache, in the API process: bookmarks, their facts, heads, ancestry.

Why: deployment gates ask ``GetLastGreen`` far more often than a bookmark
moves. Reading storage on every call made the API's CPU per call four times a
bare gRPC server's; a hit here touches no database and no SourceControl.

What may be served, and why it is never greener than storage:

1. Content only ever comes from storage (or SourceControl). Events carry no
   content into the cache: an event for ``(queue, project)`` only *drops*
   that entry, so a forged event costs a storage read, never a wrong answer.
2. A bookmark entry is served only while it is younger than ``max_age_s``
   *and* the event feed is caught up (``FeedState.caught_up``): it has taken
   every record the broker held at a fetch answered within ``feed_lag_s``.
   With the feed down, behind or absent every call reads through. Since the
   record stage publishes its event after it moved the bookmark, the first
   rule bounds how long an answer can lag storage even if that event is late
   or lost.
3. A read that began before an invalidation does not install what it read
   (a per-key generation), so an event racing a miss cannot leave the older
   bookmark behind. Bookmarks only move forward (``queue_ops.advance_bookmark``):
   an entry is only replaced by a bookmark at least as new.
4. Green is final (``domain.fact.outranks``): the authoritative fact of a
   green commit never changes, so green facts are kept by ``(queue, uri,
   project)`` without invalidation. A bookmark points only at green commits,
   which makes a miss one primary-key read of the Queue (or project bookmark)
   row. Facts that are not green are never cached.
5. Ancestry of two fixed commits never changes: ``ANCESTOR``/``NOT_ANCESTOR``
   are kept per ``(queue, head, commit)``; ``UNKNOWN`` (SourceControl could
   not tell) is not.
6. The branch head moves on a push. A caller that asks for ``on_branch``
   gets a head resolved for that call; the advisory ``reachable`` of a plain
   answer is stamped against a head at most ``head_max_age_s`` old, and the
   answer names that head (``head_uri``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from stovepipe.domain import ValidationFact, is_newer
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.storage import Store

DEFAULT_MAX_AGE_S = 2.0
DEFAULT_FEED_LAG_S = 1.0
DEFAULT_HEAD_MAX_AGE_S = 1.0
MAX_FACTS = 10_000
MAX_ANCESTRY = 10_000

Clock = Callable[[], float]


class HeadUnknown(Exception):
    """SourceControl failed to resolve the head moments ago; not asked again so soon."""


class FeedState(Protocol):
    """The event feed as the cache sees it (``stovepipe.runtime.event_feed.EventFeed``)."""

    def observe(self, observer: Callable[[str, str], None]) -> None: ...
    def caught_up(self, within_s: float) -> bool: ...


class Heads(Protocol):
    """The Queue's head and ancestry from SourceControl (``stages.HeadIngester``)."""

    async def head(self, queue: str) -> str: ...
    async def on_branch(self, queue: str, uri: str, head: str) -> Ancestry: ...


@dataclass(frozen=True)
class Bookmark:
    """A last-green bookmark as storage had it: ``uri`` empty when nothing is green yet."""

    uri: str
    request_id: str
    fact: ValidationFact | None


@dataclass
class _Entry:
    bookmark: Bookmark
    loaded_at: float


@dataclass(frozen=True)
class GateCacheSettings:
    """``max_age_s`` 0 turns the bookmark cache off (every call reads storage)."""

    max_age_s: float = DEFAULT_MAX_AGE_S
    feed_lag_s: float = DEFAULT_FEED_LAG_S
    head_max_age_s: float = DEFAULT_HEAD_MAX_AGE_S


class GateCache:
    """Bookmarks and their facts for ``GetLastGreen``, under the rules in the module doc."""

    def __init__(
        self,
        store: Store,
        heads: Heads,
        feed: FeedState | None,
        settings: GateCacheSettings | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._heads = heads
        self._feed = feed
        self._settings = settings or GateCacheSettings()
        self._clock = clock
        self._bookmarks: dict[tuple[str, str], _Entry] = {}
        self._generations: dict[tuple[str, str], int] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[Bookmark]] = {}
        self._facts: OrderedDict[tuple[str, str, str], ValidationFact] = OrderedDict()
        self._ancestry: OrderedDict[tuple[str, str, str], Ancestry] = OrderedDict()
        self._heads_seen: dict[str, tuple[str, float]] = {}
        self._head_failed: dict[str, float] = {}
        self.hits = 0
        self.misses = 0
        if feed is not None and self._settings.max_age_s > 0:
            feed.observe(self.invalidate)

    def invalidate(self, queue: str, project: str) -> None:
        """Forget ``(queue, project)``'s bookmark: an event says it may have moved."""
        key = (queue, project)
        self._generations[key] = self._generations.get(key, 0) + 1
        self._bookmarks.pop(key, None)

    async def bookmark(self, queue: str, project: str) -> Bookmark:
        """The bookmark of ``(queue, project)``: cached while fresh, else read from storage."""
        key = (queue, project)
        entry = self._bookmarks.get(key)
        if entry is not None and self._servable(entry):
            self.hits += 1
            return entry.bookmark
        self.misses += 1
        loading = self._loading.get(key)
        if loading is not None:  # one storage read for every caller missing at once
            return await asyncio.shield(loading)
        future: asyncio.Future[Bookmark] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            generation = self._generations.get(key, 0)
            started = self._clock()
            found = await self._read(queue, project)
            if self._settings.max_age_s > 0 and self._generations.get(key, 0) == generation:
                self._install(key, found, started)
            future.set_result(found)
            return found
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[key]

    async def head(self, queue: str, *, fresh: bool) -> str:
        """The Queue's head: resolved now with ``fresh``, else at most ``head_max_age_s`` old.

        Without ``fresh``, a resolution that failed less than ``head_max_age_s`` ago
        raises :class:`HeadUnknown` instead of asking SourceControl again: an
        extension that is down must not cost every gate call a round trip."""
        now = self._clock()
        if not fresh:
            seen = self._heads_seen.get(queue)
            if seen is not None and now - seen[1] <= self._settings.head_max_age_s:
                return seen[0]
            failed = self._head_failed.get(queue)
            if failed is not None and now - failed <= self._settings.head_max_age_s:
                raise HeadUnknown(queue)
        try:
            head = await self._heads.head(queue)
        except Exception:
            self._head_failed[queue] = now
            raise
        self._head_failed.pop(queue, None)
        self._heads_seen[queue] = (head, now)
        return head

    async def ancestry(self, queue: str, uri: str, head: str) -> Ancestry:
        """Whether ``uri`` is reachable from ``head``; definite answers are kept."""
        key = (queue, head, uri)
        known = self._ancestry.get(key)
        if known is not None:
            self._ancestry.move_to_end(key)
            return known
        answer = await self._heads.on_branch(queue, uri, head)
        if answer is not Ancestry.UNKNOWN:
            _put(self._ancestry, key, answer, MAX_ANCESTRY)
        return answer

    def _servable(self, entry: _Entry) -> bool:
        if self._clock() - entry.loaded_at > self._settings.max_age_s:
            return False
        return self._feed is not None and self._feed.caught_up(self._settings.feed_lag_s)

    def _install(self, key: tuple[str, str], found: Bookmark, loaded_at: float) -> None:
        held = self._bookmarks.get(key)
        if held is not None and _newer(held.bookmark.request_id, found.request_id):
            return  # bookmarks only move forward; never replace a newer one
        self._bookmarks[key] = _Entry(found, loaded_at)

    async def _read(self, queue: str, project: str) -> Bookmark:
        """One primary-key read of the bookmark's row; its fact from the green-fact cache,
        or storage the first time this commit is the bookmark."""
        if project:
            row = await self._store.get_project_bookmark(queue, project)
            uri = row.last_green_uri if row else None
            request_id = row.last_green_request_id if row else None
        else:
            state = await self._store.get_queue(queue)
            uri = state.last_green_uri if state else None
            request_id = state.last_green_request_id if state else None
        if not uri or not request_id:
            return Bookmark("", "", None)
        return Bookmark(uri, request_id, await self._green_fact(queue, uri, project))

    async def _green_fact(self, queue: str, uri: str, project: str) -> ValidationFact | None:
        key = (queue, uri, project)
        fact = self._facts.get(key)
        if fact is not None:
            self._facts.move_to_end(key)
            return fact
        fact = await self._store.get_fact(queue, uri, project)
        if fact is not None and fact.green:
            _put(self._facts, key, fact, MAX_FACTS)
        return fact


K = TypeVar("K")
V = TypeVar("V")


def _put(cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _newer(held: str, found: str) -> bool:
    """True when the held bookmark's Request is newer than the one just read."""
    return bool(held) and held != found and is_newer(held, found or None)
