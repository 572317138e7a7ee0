"""How fresh each Queue's last green commit is, its staleness episodes, and their gauges.

The product's own health signal: a last-known-good that silently stops moving
while commits keep arriving is the failure a deployment gate cannot see.
:func:`assess_all` reads storage for many Queues in two statements;
:class:`FreshnessMonitor` does that for every configured Queue on a timer,
exports the gauges, and — for Queues with a ``staleness:`` objective —
announces the start of a staleness episode (``dev.stovepipe.queue.stale``) and
its end (``dev.stovepipe.queue.fresh``) on ``stovepipe.hook``, each exactly
once (storage arbitrates between replicas).

The clock is injected, so the objective is testable without waiting hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from stovepipe.config import StovepipeConfig
from stovepipe.config.queues import QueueConfig, StalenessConfig
from stovepipe.messaging import HOOK
from stovepipe.stages.ports import Publisher
from stovepipe.storage import Store
from stovepipe.telemetry.metrics import (
    HOOK_DELIVERIES,
    QUEUE_COMMITS_SINCE_LAST_GREEN,
    QUEUE_LAST_GREEN_AGE_SECONDS,
    QUEUE_SLOTS_IN_USE,
    QUEUE_SLOTS_MAX,
    QUEUE_STALE,
)
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

EVENT_STALE = "dev.stovepipe.queue.stale"
EVENT_FRESH = "dev.stovepipe.queue.fresh"
DEFAULT_INTERVAL_S = 15.0

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Freshness:
    """One Queue's standing. ``last_green_age_s`` is ``None`` before anything was reported."""

    queue: str
    last_green_uri: str | None
    last_green_request_id: str | None
    latest_request_id: str | None
    last_green_age_s: float | None
    commits_since_last_green: int
    slots_in_use: int

    def breaches(self, objective: StalenessConfig) -> bool:
        """Commits wait behind the last green one, too many of them or for too long."""
        if self.commits_since_last_green == 0:
            return False
        if self.commits_since_last_green > objective.max_commits:
            return True
        return self.last_green_age_s is not None and self.last_green_age_s > objective.max_age


async def assess(store: Store, queue: str, now: datetime) -> Freshness:
    """Where ``queue`` stands at ``now``, read from storage."""
    return (await assess_all(store, [queue], now))[queue]


async def assess_all(store: Store, names: Sequence[str], now: datetime) -> dict[str, Freshness]:
    """Where each Queue of ``names`` stands at ``now``: two reads for all of them."""
    out: dict[str, Freshness] = {}
    for queue, (state, green_at, since, first_at) in (await store.standings(names)).items():
        reference = green_at or first_at
        out[queue] = Freshness(
            queue=queue,
            last_green_uri=state.last_green_uri if state else None,
            last_green_request_id=state.last_green_request_id if state else None,
            latest_request_id=state.latest_request_id if state else None,
            last_green_age_s=(now - reference).total_seconds() if reference else None,
            commits_since_last_green=since,
            slots_in_use=state.in_flight_count if state else 0,
        )
    return out


def staleness_event(
    freshness: Freshness, objective: StalenessConfig, stale: bool, now: datetime
) -> topics_pb2.HookEvent:
    """The announcement of a staleness episode starting (``stale``) or ending."""
    kind = EVENT_STALE if stale else EVENT_FRESH
    request_id = freshness.last_green_request_id or freshness.latest_request_id or ""
    digest = hashlib.sha256(f"{freshness.queue}\0{kind}\0{now.isoformat()}".encode()).hexdigest()
    when = Timestamp()
    when.FromDatetime(now)
    return topics_pb2.HookEvent(
        id=digest[:32],
        source=f"stovepipe/{freshness.queue}",
        type=kind,
        spec_version="1.0",
        time=when,
        subject=freshness.queue,
        data=topics_pb2.GreennessEventData(
            queue=freshness.queue,
            uri=freshness.last_green_uri or "",
            request_id=request_id,
        ),
        staleness=topics_pb2.QueueStalenessData(
            queue=freshness.queue,
            stale=stale,
            last_green_age_seconds=freshness.last_green_age_s or 0.0,
            commits_since_last_green=freshness.commits_since_last_green,
            max_age_seconds=objective.max_age,
            max_commits=objective.max_commits,
        ),
    )


class FreshnessMonitor:
    """Judges every configured Queue: gauges always, episodes where an objective is set."""

    def __init__(
        self,
        config: StovepipeConfig,
        store: Store,
        publisher: Publisher,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._config = config
        self._store = store
        self._publisher = publisher
        self._clock = clock

    async def check(self) -> list[topics_pb2.HookEvent]:
        """One pass over the Queues; returns the events it announced."""
        announced: list[topics_pb2.HookEvent] = []
        now = self._clock()
        standings = await assess_all(self._store, self._config.queue_names, now)
        for queue in self._config.queues:
            event = await self._check_queue(queue, standings[queue.name], now)
            if event is not None:
                announced.append(event)
        configured = set(self._config.queue_names)
        for (name, state), count in (await self._store.count_hook_deliveries()).items():
            if name in configured:  # a Queue removed from the file is no label any more
                HOOK_DELIVERIES.labels(name, state).set(count)
        return announced

    async def _check_queue(
        self, queue: QueueConfig, freshness: Freshness, now: datetime
    ) -> topics_pb2.HookEvent | None:
        QUEUE_SLOTS_IN_USE.labels(queue.name).set(freshness.slots_in_use)
        QUEUE_SLOTS_MAX.labels(queue.name).set(queue.max_concurrent)
        QUEUE_COMMITS_SINCE_LAST_GREEN.labels(queue.name).set(freshness.commits_since_last_green)
        if freshness.last_green_age_s is not None:
            QUEUE_LAST_GREEN_AGE_SECONDS.labels(queue.name).set(freshness.last_green_age_s)
        objective = queue.staleness
        if objective is None:
            return None
        stale = freshness.breaches(objective)
        QUEUE_STALE.labels(queue.name).set(1 if stale else 0)
        if not await self._store.turn_staleness(queue.name, stale, now):
            return None
        event = staleness_event(freshness, objective, stale, now)
        await self._publisher.publish(HOOK.name, event)
        log.log(
            logging.WARNING if stale else logging.INFO,
            "queue %s is %s: %d commits since its last green, reported %.0fs ago",
            queue.name,
            "stale" if stale else "fresh again",
            freshness.commits_since_last_green,
            freshness.last_green_age_s or 0.0,
        )
        return event

    async def run(self, stop: asyncio.Event, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Check every ``interval_s`` until ``stop``; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("freshness check failed; trying again in %.0fs", interval_s)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                continue
