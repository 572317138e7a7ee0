"""Several records of one partition in flight, in key order, committed contiguously.

Why: a consumer that handles one record at a time and commits after each has
a throughput of one over its handler latency, however idle the machine. Most
of a stage's latency is waiting (an extension call, a database commit), so
records of different keys can overlap safely: ordering only ever mattered per
key (a Queue's heads, a Request's steps), and records of different keys
already ran concurrently whenever they hashed to different partitions.

How, per subscription (:class:`Flow`) and per assigned partition
(:class:`Window`):

- A fetched record is *admitted* into its partition's window; when the
  window then holds ``max_in_flight`` uncommitted records, the partition is
  paused (aiokafka drops what it had prefetched for it and fetches it again
  after the resume) until the frontier moves. Back-pressure per partition:
  no unbounded queue, and a full window never stops the consumer's other
  partitions.
- Each admitted record runs in its own task, chained behind the previous
  record *with the same key* (a lane): same key, fetch order; different keys,
  concurrently.
- The window keeps the admitted offsets in fetch order; the commit frontier
  is one past the longest prefix of them that has completed. Only the
  frontier is committed, so a crash never commits past a record still in
  flight, and redelivery re-runs exactly the records after the frontier.
  Commits are coalesced: one commit request in flight per consumer, carrying
  the latest frontier of every partition that moved.
- A partition being revoked stops admitting, lets its running handlers finish
  (bounded), commits its frontier while the consumer still owns it, and is
  forgotten; a handler still running past the bound is left to finish but its
  completion is no longer committed (the next owner runs the record again,
  which idempotent handlers tolerate).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

log = logging.getLogger(__name__)

Handle = Callable[[Any, "Window"], Awaitable[bool]]
"""Runs one record to its end: ``True`` when it is settled (may be committed)."""

Commit = Callable[[Any, dict[TopicPartition, int]], Awaitable[bool]]
"""Commits explicit offsets on a consumer; ``False`` when the commit failed."""


class Window:
    """One assigned partition's records between admission and commit."""

    def __init__(self, partition: TopicPartition, limit: int) -> None:
        self.partition = partition
        self.limit = limit
        self.accepting = True
        """False once the partition is being revoked or the flow drained: nothing new
        starts, and a record waiting for redelivery gives up."""
        self.counting = True
        """False once the window was forgotten: completions are no longer committed."""
        self.frontier: int | None = None
        """The offset to commit: every admitted record before it has completed."""
        self.committed: int | None = None
        self._order: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self._last_admitted = -1
        self._lanes: dict[bytes | None, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.paused = False

    @property
    def uncommitted(self) -> int:
        """Admitted records not yet below the frontier."""
        return len(self._order)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._running)

    @property
    def full(self) -> bool:
        return len(self._order) >= self.limit

    def stop_accepting(self) -> None:
        self.accepting = False

    def admit(self, offset: int, key: bytes | None, run: Callable[[], Awaitable[None]]) -> bool:
        """Start ``run`` behind the lane of ``key``; ``False`` if the record is not taken."""
        if not self.accepting or offset <= self._last_admitted:
            return False
        self._last_admitted = offset
        self._order.append(offset)
        previous = self._lanes.get(key)

        async def in_lane() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            if self.accepting:
                await run()

        task = asyncio.create_task(in_lane())
        self._lanes[key] = task
        self._running.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._running.discard(done)
            if self._lanes.get(key) is done:
                del self._lanes[key]

        task.add_done_callback(forget)
        return True

    def complete(self, offset: int) -> bool:
        """``offset`` is settled; ``True`` when the frontier moved."""
        if not self.counting:
            return False
        self._done.add(offset)
        moved = False
        while self._order and self._order[0] in self._done:
            first = self._order.popleft()
            self._done.discard(first)
            self.frontier = first + 1
            moved = True
        return moved

    @property
    def to_commit(self) -> int | None:
        """The frontier when it is ahead of what was committed."""
        if self.frontier is None or self.frontier == self.committed:
            return None
        return self.frontier


class Flow:
    """The windows of one subscription's consumer, and its coalesced commits."""

    def __init__(
        self, name: str, max_in_flight: int, handle: Handle, commit: Commit, settle_s: float
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.name = name
        self.max_in_flight = max_in_flight
        self._handle = handle
        self._commit = commit
        self._settle_s = settle_s
        self._windows: dict[TopicPartition, Window] = {}
        self._consumer: Any = None
        self._open = True
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()
        self.revoking = 0
        """Partitions being revoked right now (tests wait on it)."""

    def windows(self) -> dict[TopicPartition, Window]:
        return dict(self._windows)

    def admit(self, consumer: Any, record: Any) -> None:
        """Take ``record`` in (from the fetch loop); pause its partition once its
        window is full."""
        if not self._open:
            return  # draining: not committed, delivered again after the restart
        self._consumer = consumer
        partition = TopicPartition(record.topic, record.partition)
        window = self._windows.get(partition)
        if window is None:
            window = self._windows[partition] = Window(partition, self.max_in_flight)

        async def run() -> None:
            if await self._handle(record, window) and window.complete(record.offset):
                self._dirty = True
                if self._flusher is None or self._flusher.done():
                    self._flusher = asyncio.create_task(self._flush())
                if window.paused and not window.full and window.accepting:
                    window.paused = False
                    _resume(consumer, partition)

        if not window.admit(record.offset, record.key, run):
            log.debug("%s: %s@%d not admitted", self.name, partition, record.offset)
        elif window.full and not window.paused:
            window.paused = _pause(consumer, partition)

    async def _flush(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._commit_frontiers(self._windows.values())

    async def _commit_frontiers(self, windows: Iterable[Window]) -> None:
        async with self._commit_lock:
            due = {w.partition: (w, f) for w in windows if (f := w.to_commit) is not None}
            if not due or self._consumer is None:
                return
            offsets = {tp: f for tp, (_, f) in due.items()}
            if await self._commit(self._consumer, offsets):
                for window, offset in due.values():
                    window.committed = offset

    async def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Let the partitions' running handlers finish (bounded), commit, forget them."""
        windows = [w for tp in partitions if (w := self._windows.get(tp)) is not None]
        if not windows:
            return
        self.revoking += len(windows)
        try:
            await self._settle(windows, self._settle_s)
        finally:
            self.revoking -= len(windows)
            for window in windows:
                if self._windows.get(window.partition) is window:
                    del self._windows[window.partition]

    async def drain(self, timeout_s: float) -> None:
        """Stop taking records, let handlers finish for ``timeout_s``, commit, cancel the rest."""
        self._open = False
        windows = list(self._windows.values())
        left = await self._settle(windows, timeout_s)
        for task in left:
            task.cancel()
        if left:
            log.warning(
                "%s: %d handler(s) still running after %.1fs were cancelled; "
                "their records are delivered again",
                self.name,
                len(left),
                timeout_s,
            )
            await asyncio.wait(left, timeout=1.0)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await self._flusher
        self._windows.clear()

    async def _settle(self, windows: list[Window], timeout_s: float) -> set[asyncio.Task[None]]:
        """Stop admitting to ``windows``, wait for their tasks, commit their frontiers,
        and stop counting completions; returns the tasks still running."""
        for window in windows:
            window.stop_accepting()
        tasks = {task for window in windows for task in window.tasks}
        left: set[asyncio.Task[None]] = set()
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=timeout_s)
        await self._commit_frontiers(windows)
        for window in windows:
            window.counting = False
        return left


def _pause(consumer: Any, partition: TopicPartition) -> bool:
    try:
        consumer.pause(partition)
    except IllegalStateError:
        return False  # revoked meanwhile
    return True


def _resume(consumer: Any, partition: TopicPartition) -> None:
    if partition in consumer.assignment():
        with contextlib.suppress(IllegalStateError):
            consumer.resume(partition)
