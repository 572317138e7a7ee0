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

Every item a stream gets carries a *cursor*: the next offset of every partition
after that item. The first item of every stream carries no event and says the
stream is ready: the reader is positioned, so any event recorded after it
reaches the stream. A stream that passes an earlier cursor (or asks for the
beginning) gets its own group-less reader starting there, so a reconnecting
watcher misses nothing that is still on the topic; it then keeps reading live.

*Observers* (the API's gate cache, :mod:`stovepipe.api.gate_cache`) are told the
``(queue, project)`` of every record the live reader takes, before it is
verified or served: telling costs nothing and a forged record can only make
the observer read storage again. While an observer is registered the live
reader runs without subscribers too, and starts again (after a pause) when
the broker fails it. :meth:`EventFeed.caught_up` says whether the reader has
taken every record the broker held at a fetch answered within the last
``within_s`` seconds: what an observer needs to know that it missed nothing
older than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stovepipe.domain import FactOrigin, InvalidInput, ValidationFact
from stovepipe.failures import short_reason
from stovepipe.hooks.events import BECAME_BROKEN, BECAME_GREEN, VERDICT_TYPES
from stovepipe.messaging import HOOK, KafkaSettings, MalformedMessage, decode
from stovepipe.messaging import headers as hdr
from stovepipe.messaging.pacing import FetchPacer
from stovepipe.storage import Store
from stovepipe.telemetry.freshness import EVENT_FRESH, EVENT_STALE
from stovepipe.v1 import topics_pb2, types_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_SUBSCRIBERS = 256
DEFAULT_MAX_PER_OWNER = 32
QUEUE_DEPTH = 1000
RESTART_PAUSE_S = 1.0
IDLE_FETCH_WAIT_MS = 250
"""A feed reader's fetch wait after ``idle_after_s`` without an event (instead of the
stage consumers' longer idle wait): few enough fetches that an idle API costs the
broker and itself next to nothing (at ``fetch_max_wait_ms`` it asked ~50 times a
second), and frequent enough that :meth:`EventFeed.caught_up` stays true for the
gate cache, whose feed lag (``DEFAULT_FEED_LAG_S``, 1 s) is four of these waits."""
"""How long the live reader waits before it starts again after a failure (observers only)."""

MAX_CURSOR = 4096
_CURSOR = re.compile(r"v1(?:;\d{1,6}=\d{1,19})*")
BEGINNING = "beginning"

_ORIGINS = {
    FactOrigin.BUILD: types_pb2.FACT_ORIGIN_BUILD,
    FactOrigin.FAIL_CLOSED: types_pb2.FACT_ORIGIN_FAIL_CLOSED,
    FactOrigin.INHERITED: types_pb2.FACT_ORIGIN_INHERITED,
}


class TooManySubscribers(RuntimeError):
    """The feed's cap on concurrent streams (in all, or for one caller) is reached."""


class SubscriberTooSlow(RuntimeError):
    """The subscriber fell more than ``QUEUE_DEPTH`` events behind and was closed."""


Positions = Mapping[int, int]
Observer = Callable[[str, str], None]
"""Told ``(queue, project)`` of every record the live reader takes, before verification."""


def encode_cursor(positions: Positions) -> str:
    """``v1;<partition>=<next offset>;...``: opaque to callers, stable across API processes."""
    return "v1" + "".join(f";{p}={o}" for p, o in sorted(positions.items()))


def decode_cursor(text: str) -> dict[int, int]:
    """The positions a cursor names; ``InvalidInput`` for anything this feed did not hand out."""
    if len(text) > MAX_CURSOR or not _CURSOR.fullmatch(text):
        raise InvalidInput("cursor is not one this server returned (pass it back unchanged)")
    out: dict[int, int] = {}
    for part in text.split(";")[1:]:
        partition, offset = part.split("=")
        out[int(partition)] = int(offset)
    return out


@dataclass(frozen=True)
class FeedItem:
    """One item of a stream: an event (``None`` on the first, "ready", item) and the cursor
    to resume after it."""

    event: topics_pb2.HookEvent | None
    cursor: str


@dataclass(eq=False)
class _Subscriber:
    owner: str
    events: asyncio.Queue[FeedItem | BaseException] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_DEPTH)
    )


class EventFeed:
    """Verified events, from the moment of subscription on or from a cursor."""

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
        self._live: set[_Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        self._positioned = asyncio.Event()
        self._positions: dict[int, int] = {}
        self._observers: list[Observer] = []
        self._live_consumer: AIOKafkaConsumer | None = None
        self._live_topic = ""
        self.dropped_unverified = 0
        self._pacer = FetchPacer(
            settings.fetch_max_wait_ms,
            min(settings.idle_fetch_max_wait_ms, IDLE_FETCH_WAIT_MS),
            settings.idle_after_s,
        )

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def observe(self, observer: Observer) -> None:
        """Tell ``observer`` of every record from now on; keeps the live reader running."""
        self._observers.append(observer)
        self._ensure_reader()

    def caught_up(self, within_s: float) -> bool:
        """True when the live reader has taken every record the broker reported in a fetch
        answered less than ``within_s`` ago, on every partition.

        False while it is starting, failed, behind (records fetched but not yet
        taken) or has not heard from the broker for longer than that.
        """
        consumer = self._live_consumer
        if consumer is None or self._reader is None or self._reader.done():
            return False
        oldest_ms = (time.time() - within_s) * 1000
        positions = self._positions
        if not positions:
            return False
        for partition, position in positions.items():
            tp = TopicPartition(self._live_topic, partition)
            try:
                highwater = consumer.highwater(tp)
                polled = consumer.last_poll_timestamp(tp)
            except AssertionError:  # no longer assigned: the reader is being replaced
                return False
            if highwater is None or polled is None or polled < oldest_ms or position < highwater:
                return False
        return True

    async def watch(self, owner: str = "", start: str = "") -> AsyncGenerator[FeedItem, None]:
        """A ready item, then every verified event with its cursor.

        ``start``: empty for "from now on", :data:`BEGINNING`, or a cursor from an
        earlier item. Raises :class:`TooManySubscribers` or ``InvalidInput`` (a bad
        cursor) before the first item."""
        resume = None if not start else ({} if start == BEGINNING else decode_cursor(start))
        mine = sum(1 for s in self._subscribers if s.owner == owner)
        if len(self._subscribers) >= self._max_subscribers or mine >= self._max_per_owner:
            raise TooManySubscribers(
                f"too many event streams ({len(self._subscribers)} open, {mine} for this caller)"
            )
        subscriber = _Subscriber(owner)
        self._subscribers.add(subscriber)
        private: asyncio.Task[None] | None = None
        try:
            if resume is None:
                already = self._positioned.is_set() and self._reader is not None
                snapshot = encode_cursor(self._positions) if already else ""
                self._live.add(subscriber)
                self._ensure_reader()
                await self._positioned.wait()
                yield FeedItem(None, snapshot or self._start_cursor)
            else:
                ready = asyncio.Event()
                start_cursor: list[str] = []

                def positioned(positions: Positions) -> None:
                    start_cursor.append(encode_cursor(positions))
                    ready.set()

                private = asyncio.create_task(
                    self._read(resume, lambda item: self._offer(subscriber, item), positioned),
                    name="event-feed-resume",
                )
                waiting = asyncio.create_task(ready.wait())
                await asyncio.wait({private, waiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
                if not ready.is_set():
                    private.result()  # raises what stopped the reader
                    raise RuntimeError("the event reader stopped before it was positioned")
                yield FeedItem(None, start_cursor[0])
            while True:
                item = await subscriber.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subscribers.discard(subscriber)
            self._live.discard(subscriber)
            if private is not None:
                await _cancel(private)
            if not self._live and not self._observers:
                await self._stop_reader()

    async def close(self) -> None:
        self._observers.clear()
        await self._stop_reader()
        self._pacer.close()

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._positioned.clear()
            self._reader = asyncio.create_task(self._read_live(), name="event-feed")

    async def _read_live(self) -> None:
        """The live reader; with observers it starts again after a failure, since they
        depend on it even when no stream is open."""
        while True:
            await self._read(None, self._fan_out, self._on_live_positioned)
            if not self._observers:
                return
            await asyncio.sleep(RESTART_PAUSE_S)
            self._positioned.clear()

    _start_cursor = "v1"

    def _on_live_positioned(self, positions: Positions) -> None:
        self._start_cursor = encode_cursor(positions)
        self._positioned.set()

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await _cancel(reader)

    async def _read(
        self,
        start: Positions | None,
        deliver: Callable[[FeedItem | BaseException], None],
        positioned: Callable[[Positions], None],
    ) -> None:
        """Read ``stovepipe.hook`` from ``start`` (``None``: the end; missing partitions:
        their beginning) and hand every verified event to ``deliver``."""
        topic = self._settings.topic(HOOK.name)
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            client_id=f"{self._settings.client_id}-events",
        )
        positions: dict[int, int] = {}
        try:
            await _started(consumer)
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
            if start is None:
                await consumer.seek_to_end(*partitions)
            else:
                await consumer.seek_to_beginning(*partitions)
                for tp in partitions:
                    if tp.partition in start:
                        consumer.seek(tp, start[tp.partition])
            for tp in partitions:  # resolve the offsets now: "from here on" starts here
                positions[tp.partition] = await consumer.position(tp)
            live = start is None
            if live:
                self._positions = positions
                self._live_consumer, self._live_topic = consumer, topic
            positioned(dict(positions))
            self._pacer.track(consumer)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if batch:
                    self._pacer.active(consumer)
                for records in batch.values():
                    for record in records:
                        event = self._decoded(record)
                        if live and event is not None:
                            self._tell_observers(event)
                        positions[record.partition] = record.offset + 1
                        if live and not self._live:
                            continue  # observers only: nobody to serve, nothing to verify
                        if event is not None:
                            event = await self._verified(record, event)
                        if event is not None:
                            deliver(FeedItem(event, encode_cursor(positions)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream ends with an error rather than hang
            log.exception("event feed stopped")
            positioned(dict(positions))
            deliver(exc)
        finally:
            if self._live_consumer is consumer:
                self._live_consumer = None
            await asyncio.wait_for(consumer.stop(), self._settings.close_timeout_s)

    def _tell_observers(self, event: topics_pb2.HookEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event.data.queue, event.data.project)
            except Exception:  # an observer's bug must not stop the feed for the streams
                log.exception("event feed observer failed")

    def _fan_out(self, item: FeedItem | BaseException) -> None:
        for subscriber in list(self._live):
            self._offer(subscriber, item)

    def _offer(self, subscriber: _Subscriber, item: FeedItem | BaseException) -> None:
        if isinstance(item, BaseException):
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.events.put_nowait(item)
            return
        try:
            subscriber.events.put_nowait(item)
        except asyncio.QueueFull:
            self._live.discard(subscriber)
            with contextlib.suppress(asyncio.QueueEmpty):
                subscriber.events.get_nowait()
            subscriber.events.put_nowait(SubscriberTooSlow("the event stream fell behind"))

    def _decoded(self, record: ConsumerRecord[bytes, bytes]) -> topics_pb2.HookEvent | None:
        """The record's event, or ``None`` (logged) for a record that is not one."""
        try:
            event: topics_pb2.HookEvent = decode(
                HOOK,
                record.value,
                self._settings.max_message_bytes,
                declared_type=hdr.from_record(record.headers).get(hdr.PAYLOAD_TYPE),
            )
        except MalformedMessage as exc:
            log.warning("not an event, skipped: %s: %s", _where(record), short_reason(exc))
            return None
        return event

    async def _verified(
        self, record: ConsumerRecord[bytes, bytes], event: topics_pb2.HookEvent
    ) -> topics_pb2.HookEvent | None:
        """The event with its facts re-read from storage, or ``None`` when storage disagrees
        (or the event is of a type this feed cannot check)."""
        return await verified_event(self._store, event, _where(record), self)


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"topic={record.topic} partition={record.partition} offset={record.offset}"


async def _started(consumer: AIOKafkaConsumer) -> None:
    """Start ``consumer``, letting a start that is under way finish even when cancelled:
    a start cut short leaves a connection behind that ``stop`` does not close."""
    starting = asyncio.ensure_future(consumer.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting
        raise


async def _cancel(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class _Counts(Protocol):
    dropped_unverified: int


async def verified_event(
    store: Store, event: topics_pb2.HookEvent, where: str, counts: _Counts | None = None
) -> topics_pb2.HookEvent | None:
    """``event`` with its verdict fields rebuilt from the stored fact, or ``None`` when no
    fact of its ``(queue, uri, project, attempt)`` agrees with it (a forged or corrupted
    event). Events of types other than the verdict types are not served: storage cannot
    confirm them."""
    data = event.data
    if event.type in (EVENT_STALE, EVENT_FRESH):
        return None  # about a Queue, not a verdict: not part of this feed, quietly
    if event.type not in VERDICT_TYPES:
        log.warning("event %s of type %s is not a verdict; not served: %s",
                    event.id[:64], event.type[:100], where)  # fmt: skip
        return None
    try:
        found = await store.get_fact_of_attempt_and_trigger(
            data.queue, data.uri, data.project, max(data.attempt, 1)
        )
    except InvalidInput:
        found = None
    fact, why = found if found is not None else (None, None)
    if fact is None or not _agrees(event, fact):
        if counts is not None:
            counts.dropped_unverified += 1
        log.warning(
            "event %s for %s@%s does not match storage; not served: %s",
            event.id[:64],
            data.queue[:200],
            data.uri[:200],
            where,
        )
        return None
    served = _from_fact(event, fact)
    if why is not None:  # why the Request exists, from storage too
        trigger, details = why
        served.data.trigger = trigger
        served.data.trigger_details.clear()
        served.data.trigger_details.update(dict(details))
    return served


def _agrees(event: topics_pb2.HookEvent, fact: ValidationFact) -> bool:
    data = event.data
    if event.type == BECAME_GREEN and not fact.green:
        return False
    if event.type == BECAME_BROKEN and fact.green:
        return False
    return (
        data.degree == fact.degree
        and data.green == fact.green
        and data.origin == _ORIGINS[fact.origin]
        and data.request_id == fact.request_id
        and data.queue == fact.queue
        and event.subject == fact.queue
    )


def _from_fact(event: topics_pb2.HookEvent, fact: ValidationFact) -> topics_pb2.HookEvent:
    served = topics_pb2.HookEvent()
    served.CopyFrom(event)
    served.subject = fact.queue
    data = served.data
    data.queue = fact.queue
    data.uri = fact.uri
    data.project = fact.project
    data.degree = fact.degree
    data.origin = _ORIGINS[fact.origin]
    data.request_id = fact.request_id
    data.green = fact.green
    data.took_bookmark = event.data.took_bookmark and fact.green
    data.attempt = fact.attempt
    data.inherited_from_uri = fact.inherited_from_uri
    del data.upstream_greens[:]
    data.upstream_greens.extend(
        types_pb2.UpstreamGreen(queue=g.queue, uri=g.uri, request_id=g.request_id)
        for g in fact.upstream_greens
    )
    return served
