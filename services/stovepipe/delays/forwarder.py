"""The delay forwarder: holds each tier message until it is due, then delivers it.

It consumes every tier topic with aiokafka directly (not through a FastStream
handler) because waiting is done by *pausing the partition* and resuming it on
a timer, never by sleeping inside a handler: heartbeats, other partitions and
shutdown all keep working while a partition waits.

Order of effects per message: produce to the target topic and await the ack,
then commit the tier offset. A crash in between re-delivers the message to the
target (handlers are idempotent); nothing is lost and nothing arrives early.

A record the forwarder can never deliver (no allowed target, or too large to
produce) is logged with its topic, partition and offset and skipped. A record
whose not-before lies further ahead than its tier's delay (a foreign or
corrupt header) is held for at most that delay after the forwarder first saw
it, so it cannot hold up its partition for ever; that is still never earlier
than the tier's delay after it was appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError
from opentelemetry import trace

from stovepipe.delays.tiers import HEADER_NOT_BEFORE, HEADER_TARGET
from stovepipe.messaging import headers as hdr
from stovepipe.messaging.assignment import AssignmentLog
from stovepipe.messaging.broker import transport_limit
from stovepipe.messaging.pacing import FetchPacer
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.telemetry.metrics import DELAY_TIER_LAG_SECONDS

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return str(value.decode("utf-8", "replace"))
    return None


class DelayForwarder:
    """Forwards due messages from tier topics to the topic named in their headers.

    Its clients connect, and are sized, as ``settings`` says; it consumes in the
    consumer group ``settings.group(group)``.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        tier_topics: Sequence[str],
        *,
        group: str = "delay",
        allowed_targets: frozenset[str] | None = None,
        tier_delays: Mapping[str, float] | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(tier_topics)
        self._group = group
        self._allowed = allowed_targets
        self._tier_delays = dict(tier_delays or {})
        self._first_seen: dict[TopicPartition, tuple[int, float]] = {}
        self._resume_handles: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        """Set once the consumer holds its partitions and the producer is connected."""
        self.forwarded = 0

    async def run(self) -> None:
        """Forward until :meth:`stop` is called."""
        settings = self._settings
        consumer = AIOKafkaConsumer(
            **settings.client_kwargs(),
            group_id=settings.group(self._group),
            client_id=settings.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            # the configured group timing, so a killed forwarder's partitions move on soon
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
        )
        consumer.subscribe(self._topics, listener=AssignmentLog(settings.group(self._group)))
        producer = AIOKafkaProducer(
            **settings.client_kwargs(),
            client_id=settings.client_id,
            enable_idempotence=False,
            acks="all",
            max_request_size=transport_limit(settings),
        )
        pacer = FetchPacer(
            settings.fetch_max_wait_ms, settings.idle_fetch_max_wait_ms, settings.idle_after_s
        )
        try:
            await producer.start()
            await consumer.start()
            pacer.track(consumer)
            self.started.set()
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=1_000, max_records=500)
                if batch or self._resume_handles:  # a message waiting to be due is work
                    pacer.active(consumer)
                for tp, records in batch.items():
                    await self._drain(consumer, producer, tp, records)
        finally:
            pacer.close()
            for handle in self._resume_handles.values():
                handle.cancel()
            await asyncio.wait_for(consumer.stop(), 10)
            await asyncio.wait_for(producer.stop(), 10)

    def stop(self) -> None:
        """Stop after the current step; a message still waiting stays uncommitted, so the
        next forwarder (after a restart) holds it again and delivers it when due."""
        self._stopping.set()

    @property
    def waiting(self) -> int:
        """Partitions paused right now because their next message is not yet due."""
        return len(self._resume_handles)

    async def _drain(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
    ) -> None:
        for record in records:
            wait_s = self._wait_for(record)
            if wait_s > 0:
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                loop = asyncio.get_running_loop()
                self._resume_handles[tp] = loop.call_later(wait_s, self._resume, consumer, tp)
                return
            target = _header(record, HEADER_TARGET)
            if target and (self._allowed is None or target in self._allowed):
                try:
                    with self._forward_span(record, target) as headers:
                        await producer.send_and_wait(
                            target, record.value, key=record.key, headers=headers
                        )
                    self.forwarded += 1
                except MessageSizeTooLargeError as exc:
                    log.error(
                        "dropping delay message too large to forward: topic=%s partition=%s "
                        "offset=%s target=%r: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        target,
                        exc,
                    )
            else:
                log.error(
                    "dropping delay message without a valid target: topic=%s partition=%s "
                    "offset=%s target=%r",
                    record.topic,
                    record.partition,
                    record.offset,
                    target,
                )
            try:
                await consumer.commit({tp: record.offset + 1})
            except (CommitFailedError, KafkaError) as exc:
                log.warning("commit failed (%s); the message may be forwarded again", exc)
                return

    @contextlib.contextmanager
    def _forward_span(
        self, record: ConsumerRecord[bytes, bytes], target: str
    ) -> Iterator[list[tuple[str, bytes]]]:
        """A span for the time the record spent in its tier, continuing the trace the
        record carries; yields the headers to forward, whose trace context now names
        this span (so the target's consumer hangs below the delay, not beside it)."""
        text = hdr.from_record(record.headers)
        tier = record.topic.removeprefix(self._settings.topic_prefix)
        not_before_ms = _int(text.get(HEADER_NOT_BEFORE))
        now_ms = int(time.time() * 1000)
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.destination.name": target,
            "stovepipe.delay.tier": tier,
            "stovepipe.attempt": hdr.attempt_of(text),
        }
        if not_before_ms is not None:
            lag_s = max(0.0, (now_ms - not_before_ms) / 1000)
            DELAY_TIER_LAG_SECONDS.labels(tier).observe(lag_s)
            attributes["stovepipe.delay.late_ms"] = max(0, now_ms - not_before_ms)
        start_ns = record.timestamp * 1_000_000 if record.timestamp else None
        with _tracer.start_as_current_span(
            f"delay {tier}",
            context=hdr.trace_context(text),
            kind=trace.SpanKind.PRODUCER,
            attributes=attributes,
            start_time=start_ns,
        ):
            carried = hdr.inject_trace_context({})
            headers = [
                (k, v)
                for k, v in record.headers or ()
                if k not in _DELAY_HEADERS and k not in carried
            ]
            headers.extend((k, v.encode()) for k, v in carried.items())
            yield headers

    def _wait_for(self, record: ConsumerRecord[bytes, bytes]) -> float:
        raw = _header(record, HEADER_NOT_BEFORE)
        if raw is None:
            return 0.0
        try:
            due_s = int(raw) / 1000.0
        except (ValueError, OverflowError):
            return 0.0
        now = time.time()
        tier_s = self._tier_delays.get(record.topic)
        if tier_s is not None:  # never longer than the tier's delay after it was first seen
            tp = TopicPartition(record.topic, record.partition)
            offset, first_seen = self._first_seen.get(tp, (-1, now))
            if offset != record.offset:
                first_seen = now
                self._first_seen[tp] = (record.offset, now)
            due_s = min(due_s, first_seen + tier_s)
        return max(0.0, due_s - now)

    def _resume(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self._resume_handles.pop(tp, None)
        if tp in consumer.assignment():
            consumer.resume(tp)


_DELAY_HEADERS = frozenset({HEADER_TARGET, HEADER_NOT_BEFORE})
