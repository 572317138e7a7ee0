"""The built-in poller: ask SourceControl for each polled Queue's head on its schedule.

One task per polled Queue, so a slow or broken repository delays only itself.
Each task:

1. at start-up, and then at every tick of the Queue's ``poll`` (``every:``
   seconds, or a cron ``schedule:`` in its time zone) plus a small random
   jitter, *claims* the tick in storage (:mod:`stovepipe.storage.poll_leases`):
   of any number of replicas exactly one wins a tick, the others skip it;
2. resolves the head (one ResolveHead, bounded by a timeout and by a shared
   limit on resolves in flight);
3. when the head differs from the one last seen, calls the same ingest path as
   the API (``HeadIngester``) with trigger ``poll`` or ``schedule``; when it did
   not move, writes nothing more (the claim was the tick's only write);
4. on an error, records it on the Queue's lease row and keeps every replica off
   the Queue for an exponential backoff (with jitter), so a broken repository
   is asked less and less often while the others keep their cadence.

``enabled: false`` Queues are not polled. The Queue set and schedules are read
once at start: every process (API, workers) must agree on which Queues exist,
so a configuration change is a restart of the deployment (``stovepipe up``
restarts nothing by itself); the poller keeps nothing in memory that a
restart would lose, since heads and backoff live in storage.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stovepipe.config import QueueConfig
from stovepipe.config.queues import PollConfig
from stovepipe.domain import TriggerKind
from stovepipe.redaction import redact
from stovepipe.stages.ports import Clock, utc_now
from stovepipe.storage.poll_leases import PollLease, PollLeases

log = logging.getLogger(__name__)

ResolveHead = Callable[[QueueConfig, float], Awaitable[str]]
"""Resolve the Queue's head within a timeout (seconds); raise on any failure."""

Ingest = Callable[[QueueConfig, str, str], Awaitable[None]]
"""Ingest the Queue at the head just resolved, with the given trigger."""


@dataclass(frozen=True)
class PollerTuning:
    """Knobs the configuration does not expose; tests and benchmarks shrink them."""

    max_in_flight: int = 32
    """ResolveHead calls in flight at once, over all Queues of this replica."""
    jitter_fraction: float = 0.1
    """A tick is delayed by up to this fraction of the Queue's period..."""
    jitter_max_s: float = 5.0
    """...and never by more than this."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    resolve_timeout_max_s: float = 30.0
    lease_floor_s: float = 10.0
    """A claim lasts at least this long (it covers one resolve and one ingest)."""


@dataclass
class PollStats:
    """What this replica did, for logs, tests and benchmarks."""

    resolves: int = 0
    ingests: int = 0
    failures: int = 0
    skipped: int = 0
    claims: list[tuple[str, int]] = field(default_factory=list)
    """``(queue, tick)`` of every tick this replica won, in order."""


class Poller:
    """See the module docstring. ``holder`` names this replica in the lease rows."""

    def __init__(
        self,
        queues: Sequence[QueueConfig],
        leases: PollLeases,
        resolve_head: ResolveHead,
        ingest: Ingest,
        *,
        holder: str,
        clock: Clock = utc_now,
        tuning: PollerTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._queues = [q for q in queues if q.poll is not None and q.poll.enabled]
        self._leases = leases
        self._resolve_head = resolve_head
        self._ingest = ingest
        self._holder = holder
        self._clock = clock
        self._tuning = tuning or PollerTuning()
        self._rng = rng or random.Random()
        self._in_flight = asyncio.Semaphore(self._tuning.max_in_flight)
        self.stats = PollStats()

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self._queues]

    async def run(self, stop: asyncio.Event, started: Callable[[], Awaitable[None]]) -> None:
        """Poll every enabled Queue until ``stop`` is set; ``started`` is awaited once the
        start-up poll of every Queue has been attempted."""
        first_round = [asyncio.Event() for _ in self._queues]
        tasks = [
            asyncio.create_task(self._keep_polling(q, stop, done), name=f"poll {q.name}")
            for q, done in zip(self._queues, first_round, strict=True)
        ]
        try:
            waiting = asyncio.ensure_future(_all_set(first_round))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            waiting.cancel()
            if not stop.is_set():
                await started()
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_polling(
        self, queue: QueueConfig, stop: asyncio.Event, first_done: asyncio.Event
    ) -> None:
        poll = queue.poll
        assert poll is not None
        try:
            await self.poll_once(queue, poll.tick_at(self._clock()))
        finally:
            first_done.set()
        while not stop.is_set():
            now = self._clock()
            due = poll.next_due(now)
            delay = (due - now).total_seconds() + self._jitter(poll, due)
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, delay))
                return
            except TimeoutError:
                pass
            await self.poll_once(queue, poll.tick_at(due))

    def _jitter(self, poll: PollConfig, due: datetime) -> float:
        bound = min(self._tuning.jitter_max_s, _period_s(poll, due) * self._tuning.jitter_fraction)
        return self._rng.uniform(0.0, bound)

    async def poll_once(self, queue: QueueConfig, tick: int) -> None:
        """Claim ``tick`` of ``queue``, resolve its head, ingest it when it moved.

        Never raises for a SourceControl or ingest failure: the Queue backs off instead.
        """
        poll = queue.poll
        assert poll is not None
        period = _period_s(poll, self._clock())
        ttl = max(self._tuning.lease_floor_s, 2 * period)
        try:
            lease = await self._leases.claim(
                queue.name, self._holder, tick, now=self._clock(), ttl_s=ttl
            )
        except Exception as exc:  # storage down: try again next tick
            log.warning("poll %s: cannot claim tick %d: %s", queue.name, tick, redact(str(exc)))
            self.stats.failures += 1
            return
        if lease is None:
            self.stats.skipped += 1
            return
        self.stats.claims.append((queue.name, tick))
        timeout = min(self._tuning.resolve_timeout_max_s, max(1.0, ttl / 2))
        try:
            async with self._in_flight:
                self.stats.resolves += 1
                head = await self._resolve_head(queue, timeout)
            if head != lease.head_uri:
                trigger = TriggerKind.POLL if poll.every is not None else TriggerKind.SCHEDULE
                await self._ingest(queue, head, trigger)
                self.stats.ingests += 1
                log.info("poll %s: head %s ingested (%s)", queue.name, head, trigger)
            await self._leases.succeeded(lease, head, now=self._clock())
        except Exception as exc:
            await self._back_off(queue, lease, exc)

    async def _back_off(self, queue: QueueConfig, lease: PollLease, exc: Exception) -> None:
        self.stats.failures += 1
        failures = lease.failures + 1
        tuning = self._tuning
        backoff = min(tuning.backoff_max_s, tuning.backoff_initial_s * 2 ** (failures - 1))
        backoff *= self._rng.uniform(0.8, 1.2)
        error = redact(f"{type(exc).__name__}: {exc}")
        log.warning(
            "poll %s failed (%d in a row), next try in %.1fs: %s",
            queue.name,
            failures,
            backoff,
            error,
        )
        try:
            await self._leases.failed(lease, error, backoff, now=self._clock())
        except Exception as stored:
            log.warning("poll %s: cannot record the failure: %s", queue.name, redact(str(stored)))


async def _all_set(events: Sequence[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


def _period_s(poll: PollConfig, at: datetime) -> float:
    """The Queue's polling period around ``at`` (a cron schedule's gap there)."""
    if poll.every is not None:
        return float(poll.every)
    due = poll.next_due(at)
    return max(1.0, (poll.next_due(due + timedelta(microseconds=1)) - due).total_seconds())
