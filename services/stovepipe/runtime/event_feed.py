"""The live feed of recorded verdicts behind ``WatchEvents``: one reader, many subscribers.

One aiokafka consumer per API process reads ``stovepipe.hook`` *without a
consumer group* (assigned partitions, starting at their end, nothing
committed, like ``stovepipe dlq``), so watching creates no group on the broker
and leaves nothing behind when a stream ends. It runs while at least one
subscriber is connected and fans every event out to each subscriber's bounded
queue; a stream that ends for any reason (finished, cancelled, past its
deadline) only removes its queue.

The broker is not trusted with verdicts: anyone who can produce to
``stovepipe.hook`` could write a "green" event. Every event is checked against
storage before it is served — the fact of its ``(queue, uri, project,
attempt)`` must exist and agree on degree, origin and Request — and what is
served is rebuilt from the stored fact. An event that does not check out is
logged and dropped.

A subscriber that cannot keep up (its queue is full) is closed with
:class:`SubscriberTooSlow` rather than hold the feed back for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.failures import short_reason
from stovepipe.messaging import HOOK, KafkaSettings, MalformedMessage, decode
from stovepipe.messaging import headers as hdr
from stovepipe.stages.record import EVENT_GREEN, EVENT_NOT_GREEN
from stovepipe.storage import Store
from stovepipe.telemetry.freshness import EVENT_FRESH, EVENT_STALE
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_SUBSCRIBERS = 256
DEFAULT_MAX_PER_OWNER = 32
QUEUE_DEPTH = 1000

_ORIGINS = {
    FactOrigin.BUILD: types_pb2.FACT_ORIGIN_BUILD,
    FactOrigin.FAIL_CLOSED: types_pb2.FACT_ORIGIN_FAIL_CLOSED,
}


class TooManySubscribers(RuntimeError):
    """The feed's cap on concurrent streams (in all, or for one caller) is reached."""


class SubscriberTooSlow(RuntimeError):
    """The subscriber fell more than ``QUEUE_DEPTH`` events behind and was closed."""


@dataclass(eq=False)
class _Subscriber:
    owner: str
    events: asyncio.Queue[topics_pb2.HookEvent | BaseException] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_DEPTH)
    )


class EventFeed:
    """Verified green / not-green events, from the moment of subscription on."""

    def __init__(
        self,
        settings: KafkaSettings,
        store: Store,
        *,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        max_per_owner: int = DEFAULT_MAX_PER_OWNER,
    ) -> None:
        self._settings = settings
        self._store = store
        self._max_subscribers = max_subscribers
        self._max_per_owner = max_per_owner
        self._subscribers: set[_Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        self._positioned = asyncio.Event()
        self.dropped_unverified = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, owner: str = "") -> AsyncIterator[topics_pb2.HookEvent]:
        """Events from now on; raises :class:`TooManySubscribers` before the first one."""
        mine = sum(1 for s in self._subscribers if s.owner == owner)
        if len(self._subscribers) >= self._max_subscribers or mine >= self._max_per_owner:
            raise TooManySubscribers(
                f"too many event streams ({len(self._subscribers)} open, {mine} for this caller)"
            )
        subscriber = _Subscriber(owner)
        self._subscribers.add(subscriber)
        try:
            if self._reader is None or self._reader.done():
                self._positioned.clear()
                self._reader = asyncio.create_task(self._read(), name="event-feed")
            await self._positioned.wait()
            while True:
                item = await subscriber.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                await self._stop_reader()

    async def close(self) -> None:
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self) -> None:
        topic = self._settings.topic(HOOK.name)
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            client_id=f"{self._settings.client_id}-events",
        )
        try:
            await consumer.start()
            partitions: list[TopicPartition] = []
            while not partitions:
                partitions = [
                    TopicPartition(topic, p)
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                if not partitions:
                    await consumer.force_metadata_update()
                    await asyncio.sleep(0.5)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolve the end offsets now: "from now on" starts here
                await consumer.position(tp)
            self._positioned.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        event = await self._verified(record)
                        if event is not None:
                            self._fan_out(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream ends with an error rather than hang
            log.exception("event feed stopped")
            self._positioned.set()
            for subscriber in list(self._subscribers):
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.events.put_nowait(exc)
        finally:
            await asyncio.wait_for(consumer.stop(), self._settings.close_timeout_s)

    def _fan_out(self, event: topics_pb2.HookEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.events.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(subscriber)
                with contextlib.suppress(asyncio.QueueEmpty):
                    subscriber.events.get_nowait()
                subscriber.events.put_nowait(SubscriberTooSlow("the event stream fell behind"))

    async def _verified(self, record: ConsumerRecord[bytes, bytes]) -> topics_pb2.HookEvent | None:
        """The event rebuilt from its stored fact, or ``None`` when storage disagrees."""
        where = f"topic={record.topic} partition={record.partition} offset={record.offset}"
        try:
            event: topics_pb2.HookEvent = decode(
                HOOK,
                record.value,
                self._settings.max_message_bytes,
                declared_type=hdr.from_record(record.headers).get(hdr.PAYLOAD_TYPE),
            )
        except MalformedMessage as exc:
            log.warning("not an event, skipped: %s: %s", where, short_reason(exc))
            return None
        if event.type in (EVENT_STALE, EVENT_FRESH):
            return None  # about a Queue, not a verdict: not part of this feed
        data = event.data
        fact = await self._store.get_fact_of_attempt(
            data.queue, data.uri, data.project, max(data.attempt, 1)
        )
        if fact is None or not _agrees(event, fact):
            self.dropped_unverified += 1
            log.warning(
                "event %s for %s@%s does not match storage; not served: %s",
                event.id[:64],
                data.queue[:200],
                data.uri[:200],
                where,
            )
            return None
        return _from_fact(event, fact)


def _agrees(event: topics_pb2.HookEvent, fact: ValidationFact) -> bool:
    data = event.data
    return (
        data.degree == fact.degree
        and data.green == fact.green
        and data.origin == _ORIGINS[fact.origin]
        and data.request_id == fact.request_id
        and event.subject == fact.uri
    )


def _from_fact(event: topics_pb2.HookEvent, fact: ValidationFact) -> topics_pb2.HookEvent:
    served = topics_pb2.HookEvent()
    served.CopyFrom(event)
    served.type = EVENT_GREEN if fact.green else EVENT_NOT_GREEN
    served.subject = fact.uri
    served.data.CopyFrom(
        topics_pb2.GreennessEventData(
            queue=fact.queue,
            uri=fact.uri,
            project=fact.project,
            degree=fact.degree,
            origin=_ORIGINS[fact.origin],
            request_id=fact.request_id,
            green=fact.green,
            took_bookmark=event.data.took_bookmark and fact.green,
            reason=fact.reason,
            attempt=fact.attempt,
        )
    )
    return served
