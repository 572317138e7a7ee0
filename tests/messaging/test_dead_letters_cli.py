"""`stovepipe dlq list|show|replay` against dead letters on the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from stovepipe.cli.main import app
from stovepipe.messaging import Bus, KafkaSettings, ensure_topics
from stovepipe.messaging import headers as hdr
from stovepipe.runtime.dead_letters import read_dead_letters, replay_dead_letter
from stovepipe.runtime.registry import all_topics
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.broker


async def test_dead_letters_are_listed_shown_and_replayed(kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings, all_topics())
    bus = Bus(kafka_settings)
    await bus.start()
    try:
        letter = topics_pb2.BuildMessage(request_id="request/q/3", queue="q")
        await bus.publish_raw(
            kafka_settings.topic("stovepipe.build.dlq"),
            letter.SerializeToString(),
            key=b"request/q/3",
            headers={
                hdr.ATTEMPT: "8",
                hdr.FAILURE_REASON: "UNAVAILABLE: runner token=hunter2 gone",
            },
        )
        await bus.publish_raw(
            kafka_settings.topic("stovepipe.record.dlq"), b"\xff\xfe", key=None, headers={}
        )
    finally:
        await bus.stop()

    letters = await read_dead_letters(kafka_settings)
    by_topic = {entry.topic: entry for entry in letters}
    build = by_topic["stovepipe.build.dlq"]
    assert (build.request_id, build.attempt) == ("request/q/3", 8)
    assert "runner" in build.reason and "hunter2" not in build.reason
    assert by_topic["stovepipe.record.dlq"].payload.startswith("<unreadable")
    assert [e.topic for e in await read_dead_letters(kafka_settings, ["build"])] == [
        "stovepipe.build.dlq"
    ]

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "STOVEPIPE__KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "STOVEPIPE__KAFKA__PARTITIONS": str(kafka_settings.partitions),
    }
    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "request/q/3" in listed.output and "2 dead letter(s)" in listed.output
    where = [build.topic, str(build.partition), str(build.offset)]
    shown = await asyncio.to_thread(runner.invoke, app, ["dlq", "show", *where], env=env)
    assert shown.exit_code == 0 and "request/q/3" in shown.output

    source = await replay_dead_letter(kafka_settings, build)
    assert source == "stovepipe.build"
    consumer = AIOKafkaConsumer(
        kafka_settings.topic("stovepipe.build"),
        bootstrap_servers=kafka_settings.bootstrap_servers,
        group_id=kafka_settings.group("check"),
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    replayed = topics_pb2.BuildMessage()
    replayed.ParseFromString(record.value)
    assert replayed == letter
    assert {k: v.decode() for k, v in record.headers}[hdr.ATTEMPT] == "1"
