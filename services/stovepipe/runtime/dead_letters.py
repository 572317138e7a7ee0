"""Read and replay dead letters for operators (``stovepipe dlq``).

Reading never joins a consumer group and never commits: listing the dead
letters does not take them away from the reconcilers. A replay publishes the
original payload to its source topic as a fresh attempt; every stage is
idempotent, so replaying a letter whose Request already ended changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from stovepipe.messaging import (
    Bus,
    KafkaSettings,
    MalformedMessage,
    decode,
    spec,
)
from stovepipe.messaging import headers as hdr
from stovepipe.redaction import redact
from stovepipe.runtime.registry import dead_letter_topics


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    request_id: str
    attempt: int
    reason: str
    payload: str


def _source_topic(dead_letter_topic: str) -> str:
    return dead_letter_topic.removesuffix(".dlq")


async def read_dead_letters(
    settings: KafkaSettings, stages: list[str] | None = None, limit: int = 1000
) -> list[DeadLetter]:
    """Every dead letter currently on the chosen stages' ``.dlq`` topics, oldest first."""
    wanted = [t for t in dead_letter_topics() if not stages or t.name.split(".")[1] in stages]
    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(),
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    letters: list[DeadLetter] = []
    try:
        await consumer.start()
        partitions = [
            TopicPartition(settings.topic(t.name), p)
            for t in wanted
            for p in sorted(consumer.partitions_for_topic(settings.topic(t.name)) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining and len(letters) < limit:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    letters.append(_letter(settings, record))
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return letters[:limit]


def _letter(settings: KafkaSettings, record: object) -> DeadLetter:
    topic = str(getattr(record, "topic", ""))
    headers = {k: v.decode("utf-8", "replace") for k, v in getattr(record, "headers", ()) or ()}
    logical = topic.removeprefix(settings.topic_prefix)
    try:
        message = decode(spec(logical), getattr(record, "value", None))
        request_id = str(getattr(message, "request_id", ""))
        payload = " ".join(str(message).split())
    except (MalformedMessage, ValueError) as exc:
        request_id, payload = "", f"<unreadable: {exc}>"
    return DeadLetter(
        topic=logical,
        partition=int(getattr(record, "partition", 0)),
        offset=int(getattr(record, "offset", 0)),
        request_id=request_id,
        attempt=hdr.attempt_of(headers),
        reason=redact(headers.get(hdr.FAILURE_REASON, "")),
        payload=redact(payload),
    )


async def replay_dead_letter(settings: KafkaSettings, letter: DeadLetter) -> str:
    """Publish the letter's payload to its source topic as attempt 1; the source topic."""
    source = _source_topic(letter.topic)
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    try:
        await consumer.start()
        tp = TopicPartition(settings.topic(letter.topic), letter.partition)
        consumer.assign([tp])
        consumer.seek(tp, letter.offset)
        record = await consumer.getone()
    finally:
        await consumer.stop()
    bus = Bus(settings)
    await bus.start()
    try:
        message = decode(spec(letter.topic), record.value)
        await bus.publish(source, message)
    finally:
        await bus.stop()
    return source
