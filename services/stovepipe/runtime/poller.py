"""The built-in poller: ask SourceControl for each polled Queue's head on its schedule.

One task per polled Queue, so a slow or broken repository delays only itself,
plus one task that renews this replica's leases. Each Queue task:

1. at start-up, and then at every tick of the Queue's ``poll`` (``every:``
   seconds, or a cron ``schedule:`` in its time zone) plus a small random
   jitter, makes sure this replica holds the Queue's lease
   (:mod:`stovepipe.storage.poll_leases`); a Queue another replica holds is
   skipped without touching storage until that lease would expire;
2. resolves the head (one ResolveHead, bounded by a timeout and by a shared
   limit on resolves in flight);
3. when the head differs from the one last seen, calls the same ingest path as
   the API (``HeadIngester``) with trigger ``poll`` or ``schedule``, then
   records the new head; when it did not move, writes nothing;
4. on an error, records it on the lease row and keeps off the Queue for an
   exponential backoff (with jitter), so a broken repository is asked less and
   less often while the others keep their cadence.

**At most one poll per tick.** Only the holder polls, and it stops polling a
Queue ``handover_margin_s`` before its lease expires unless a renewal extended
it. A replica that takes a Queue over polls only ticks that start after the
previous lease ended, so the last tick of the old holder is never polled again.
Replicas started together race for each lease once; the loser leaves the Queue
alone. A stopping replica releases its leases for the others to take at once.

``enabled: false`` Queues are not polled. The Queue set and schedules are read
once at start: every process (API, workers) must agree on which Queues exist,
so a configuration change is a restart of the deployment; the poller keeps
nothing in memory that a restart would lose (heads and backoff are in storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from stovepipe.config import QueueConfig
from stovepipe.config.queues import PollConfig
from stovepipe.domain import TriggerKind
from stovepipe.redaction import redact
from stovepipe.stages.ports import Clock, utc_now
from stovepipe.storage.poll_leases import NEVER, Note, PollLease, PollLeases
from stovepipe.telemetry.metrics import (
    POLLER_BACKOFF_SECONDS,
    POLLER_CONSECUTIVE_FAILURES,
    POLLER_INGESTS,
    POLLER_LEASE_HELD,
    POLLER_RESOLVE_SECONDS,
    POLLER_RESOLVES,
    POLLER_TICKS,
)

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
    resolve_timeout_s: float = 10.0
    lease_ttl_s: float = 30.0
    """How long a replica holds its Queues without renewing; a replica that dies
    leaves its Queues unpolled this long at most."""
    handover_margin_s: float = 2.0
    """A holder stops polling this long before its lease would expire unrenewed."""


@dataclass
class PollStats:
    """What this replica did, for logs, tests and benchmarks."""

    resolves: int = 0
    ingests: int = 0
    failures: int = 0
    skipped: int = 0
    claims: list[tuple[str, int]] = field(default_factory=list)
    """``(queue, tick)`` of every tick this replica polled, in order."""


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
        self._held: dict[str, PollLease] = {}
        self._taken: dict[str, datetime] = {}
        self._notes: dict[str, Note] = {}
        self.stats = PollStats()

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self._queues]

    async def run(self, stop: asyncio.Event, started: Callable[[], Awaitable[None]]) -> None:
        """Poll every enabled Queue until ``stop`` is set; ``started`` is awaited once the
        start-up poll of every Queue has been attempted. Leases are released on the way out."""
        await self._refresh_leases()
        first_round = [asyncio.Event() for _ in self._queues]
        tasks = [
            asyncio.create_task(self._keep_polling(q, stop, done), name=f"poll {q.name}")
            for q, done in zip(self._queues, first_round, strict=True)
        ]
        renewing = asyncio.create_task(self._keep_renewing(stop), name="renew poll leases")
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
            for task in [*tasks, renewing]:
                task.cancel()
            await asyncio.gather(*tasks, renewing, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._flush_notes()
            with contextlib.suppress(Exception):
                await self._leases.release(self._holder, list(self._held), now=self._clock())
            self._held.clear()
            self._export_leases()

    async def _keep_renewing(self, stop: asyncio.Event) -> None:
        """Three times per lease period: extend every held lease, and take the Queues
        whose holder's lease has run out."""
        period = self._tuning.lease_ttl_s / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
                return
            await self._refresh_leases()

    async def _flush_notes(self) -> None:
        notes, self._notes = self._notes, {}
        try:
            await self._leases.record(self._holder, notes)
        except Exception:
            self._notes = {**notes, **self._notes}  # written with the next round
            raise

    async def _refresh_leases(self) -> None:
        now = self._clock()
        ttl = self._tuning.lease_ttl_s
        try:
            await self._flush_notes()
            if self._held:
                kept = await self._leases.renew(self._holder, list(self._held), now=now, ttl_s=ttl)
                expires = now + timedelta(seconds=ttl)
                for name in list(self._held):
                    if name in kept:
                        self._held[name] = replace(self._held[name], expires_at=expires)
                    else:
                        log.warning("poll %s: lease lost to another replica", name)
                        del self._held[name]
            wanted = [
                q.name
                for q in self._queues
                if q.name not in self._held and self._taken.get(q.name, now) <= now
            ]
            if wanted:
                got, others = await self._leases.acquire(wanted, self._holder, now=now, ttl_s=ttl)
                self._held.update(got)
                for name in got:
                    self._taken.pop(name, None)
                self._taken.update({name: taken.expires_at for name, taken in others.items()})
        except Exception as exc:  # storage down: held leases run out, polling stops
            log.warning("cannot acquire or renew poll leases: %s", redact(str(exc)))
        self._export_leases()

    def _export_leases(self) -> None:
        for q in self._queues:
            POLLER_LEASE_HELD.labels(q.name).set(1 if q.name in self._held else 0)

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

    def _lease_for(self, queue: QueueConfig, tick: int) -> PollLease | None:
        """This replica's lease on ``queue`` if it may poll ``tick`` now; None otherwise."""
        poll = queue.poll
        assert poll is not None
        held = self._held.get(queue.name)
        margin = timedelta(seconds=self._tuning.handover_margin_s)
        if held is None or held.expires_at - margin <= self._clock():
            return None
        if poll.tick_at(held.previous_expiry) >= tick:
            return None  # the previous holder may have polled this tick: start at the next
        return held

    async def poll_once(self, queue: QueueConfig, tick: int) -> None:
        """Poll ``tick`` of ``queue`` if this replica holds it: resolve the head, ingest it
        when it moved. Never raises for a SourceControl or ingest failure: the Queue
        backs off instead."""
        poll = queue.poll
        assert poll is not None
        lease = self._lease_for(queue, tick)
        if lease is None or lease.not_before > self._clock():
            self.stats.skipped += 1
            POLLER_TICKS.labels(queue.name, "not_held" if lease is None else "backing_off").inc()
            return
        POLLER_TICKS.labels(queue.name, "polled").inc()
        self.stats.claims.append((queue.name, tick))
        try:
            async with self._in_flight:
                self.stats.resolves += 1
                head = await self._timed_resolve(queue)
            if head != lease.head_uri or lease.failures:
                if head != lease.head_uri:
                    trigger = TriggerKind.POLL if poll.every is not None else TriggerKind.SCHEDULE
                    await self._ingest(queue, head, trigger)
                    self.stats.ingests += 1
                    POLLER_INGESTS.labels(queue.name, str(trigger)).inc()
                    log.info("poll %s: head %s ingested (%s)", queue.name, head, trigger)
                self._note(queue.name, head_uri=head, failures=0, not_before=NEVER)
            POLLER_BACKOFF_SECONDS.labels(queue.name).set(0)
            POLLER_CONSECUTIVE_FAILURES.labels(queue.name).set(0)
        except Exception as exc:
            await self._back_off(queue, lease, exc)

    async def _timed_resolve(self, queue: QueueConfig) -> str:
        started = time.perf_counter()
        try:
            head = await self._resolve_head(queue, self._tuning.resolve_timeout_s)
        except Exception:
            POLLER_RESOLVES.labels(queue.name, "error").inc()
            raise
        finally:
            POLLER_RESOLVE_SECONDS.labels(queue.name).observe(time.perf_counter() - started)
        POLLER_RESOLVES.labels(queue.name, "ok").inc()
        return head

    def _note(
        self,
        name: str,
        *,
        head_uri: str | None,
        failures: int,
        not_before: datetime,
        error: str = "",
    ) -> None:
        """Remember at once, write with the next renewal round (a crash before it costs a
        repeated ingest of the same head, which finds its existing Request)."""
        held = self._held.get(name)
        if held is not None:
            self._held[name] = replace(
                held, head_uri=head_uri, failures=failures, not_before=not_before
            )
            self._notes[name] = Note(head_uri, failures, not_before, error)

    async def _back_off(self, queue: QueueConfig, lease: PollLease, exc: Exception) -> None:
        self.stats.failures += 1
        failures = lease.failures + 1
        tuning = self._tuning
        backoff = min(tuning.backoff_max_s, tuning.backoff_initial_s * 2 ** (failures - 1))
        backoff *= self._rng.uniform(0.8, 1.2)
        not_before = self._clock() + timedelta(seconds=backoff)
        POLLER_BACKOFF_SECONDS.labels(queue.name).set(backoff)
        POLLER_CONSECUTIVE_FAILURES.labels(queue.name).set(failures)
        error = redact(f"{type(exc).__name__}: {exc}")
        log.warning(
            "poll %s failed (%d in a row), next try in %.1fs: %s",
            queue.name,
            failures,
            backoff,
            error,
        )
        self._note(
            queue.name,
            head_uri=lease.head_uri,
            failures=failures,
            not_before=not_before,
            error=error,
        )


async def _all_set(events: Sequence[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


def _period_s(poll: PollConfig, at: datetime) -> float:
    """The Queue's polling period around ``at`` (a cron schedule's gap there)."""
    if poll.every is not None:
        return float(poll.every)
    due = poll.next_due(at)
    return max(1.0, (poll.next_due(due + timedelta(microseconds=1)) - due).total_seconds())
