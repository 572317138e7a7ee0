"""The dispatcher's intake: an event read from ``stovepipe.hook`` becomes delivery rows.

For each subscription of the event's Queue that wants it (``events:`` and the
optional ``projects:`` filter), one ``hook_deliveries`` row is created,
create-only: the same event read twice (redelivery, the record stage
re-emitting it, a restart before the commit) finds its rows and adds nothing.
The row holds the event, so delivery never needs the topic again.

Verdict events are checked against storage first (as ``WatchEvents`` does):
anyone who can produce to the topic could otherwise make every subscriber
hear a forged "became green". Other ``dev.stovepipe.*`` types (for example
a Queue going stale) are taken as they are, for the Queue named by their
``subject``; they cannot be checked against a fact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from stovepipe.config import StovepipeConfig
from stovepipe.config.hooks import HookConfig
from stovepipe.config.queues import QueueConfig
from stovepipe.domain.errors import StovepipeError
from stovepipe.hooks.events import VERDICT_TYPES, matches_types, position
from stovepipe.runtime.event_feed import verified_event
from stovepipe.storage import AlreadyExists, HookDelivery, HookDeliveryStatus, Store
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

MAX_ID = 200


def wants(hook: HookConfig, event: topics_pb2.HookEvent) -> bool:
    """Whether the subscription asked for this event."""
    if hook.projects and event.data.project not in hook.projects:
        return False
    return matches_types(hook.events.value, event.type, event.data.green)


class HookIntake:
    """Handler of ``stovepipe.hook``: creates the deliveries, then wakes their lanes."""

    def __init__(
        self,
        store: Store,
        config: StovepipeConfig,
        clock: Callable[[], datetime],
        wake: Callable[[str, str], None],
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._wake = wake

    def _queue_of(self, event: topics_pb2.HookEvent) -> QueueConfig | None:
        name = event.data.queue if event.type in VERDICT_TYPES else event.subject
        try:
            return self._config.queue(name)
        except StovepipeError:
            return None

    async def __call__(self, event: topics_pb2.HookEvent) -> None:
        if not event.id or len(event.id) > MAX_ID or not event.type.startswith("dev.stovepipe."):
            log.warning("not a Stovepipe event (id %r, type %r); skipped",
                        event.id[:64], event.type[:100])  # fmt: skip
            return
        queue = self._queue_of(event)
        if queue is None:
            log.info("event %s is for a Queue not configured here; skipped", event.id[:64])
            return
        hooks = [hook for hook in queue.hooks if wants(hook, event)]
        if not hooks:
            return
        if event.type in VERDICT_TYPES:
            checked = await verified_event(self._store, event, f"event {event.id[:64]}")
            if checked is None:
                return
            event = checked
        payload = event.SerializeToString()
        now = self._clock()
        for hook in hooks:
            row = HookDelivery(
                queue=queue.name,
                event_id=event.id,
                hook=hook.name,
                status=HookDeliveryStatus.PENDING,
                version=1,
                created_at=now,
                updated_at=now,
                event_type=event.type,
                event=payload,
                position=position(event),
            )
            try:
                await self._store.create_hook_delivery(row)
                log.info("%s: event %s (%s) queued for hook %s",
                         queue.name, event.id, event.type, hook.name)  # fmt: skip
            except AlreadyExists:
                pass
            self._wake(queue.name, hook.name)
