"""Several records in flight per partition, on the real broker: order per key,
a bounded window, contiguous commits across a kill -9, and a rebalance."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from harness.messaging import committed_offset, placed, process_message
from stovepipe.messaging import PIPELINE_TOPICS, Bus, Delivery, KafkaSettings, ensure_topics
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2

pytestmark = pytest.mark.broker

PROCESS = "stovepipe.process"
CHILD = Path(__file__).with_name("inflight_child.py")


async def _one_partition(settings: KafkaSettings) -> KafkaSettings:
    one = replace(settings, partitions=1)
    await ensure_topics(one, PIPELINE_TOPICS)
    return one


async def test_records_of_one_key_stay_in_order_while_keys_overlap(
    kafka_settings: KafkaSettings,
) -> None:
    settings = await _one_partition(kafka_settings)
    limit = 6
    handled: dict[str, list[str]] = {}
    running = 0
    most_running = 0
    other_key_done = asyncio.Event()

    async def handle(payload: topics_pb2.ProcessMessage, _delivery: Delivery) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        try:
            if payload.request_id == "request/q0/0":
                # only finishes if another key's record runs meanwhile
                await asyncio.wait_for(other_key_done.wait(), 60)
            await asyncio.sleep(random.random() / 100)  # shuffle completions
            handled.setdefault(payload.queue, []).append(payload.request_id)
            if payload.queue != "q0":
                other_key_done.set()
        finally:
            running -= 1

    bus = Bus(settings)
    bus.consumer.subscribe(PROCESS, handle, group="order", max_in_flight=limit)
    expected: dict[str, list[str]] = {}
    async with bus:
        last = None
        for n in range(10):
            for queue in ("q0", "q1", "q2", "q3"):
                last = await bus.publish(PROCESS, process_message(n, queue))
                expected.setdefault(queue, []).append(f"request/{queue}/{n}")
        assert last is not None
        _, last_offset = placed(last)

        async def all_committed() -> bool:
            return await committed_offset(settings, PROCESS, "order", 0) == last_offset + 1

        await until(all_committed, what="every record handled and committed")

    assert handled == expected
    assert 2 <= most_running <= limit


async def test_a_slow_record_holds_the_commit_and_only_uncommitted_records_return_after_kill_9(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = await _one_partition(kafka_settings)
    journal = tmp_path / "journal"
    journal.touch()

    def lines() -> list[str]:
        return journal.read_text().splitlines()

    def offsets(word: str) -> set[int]:
        return {int(line.split()[1]) for line in lines() if line.startswith(f"{word} ")}

    producer = Bus(settings)
    async with producer:
        child = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                settings.bootstrap_servers,
                settings.topic_prefix,
                "kill9",
                str(journal),
            ],
            start_new_session=True,
        )
        try:
            await until(lambda: "ready" in lines(), what="the child consumer joined")
            for n in range(5):
                await producer.publish(PROCESS, process_message(n, f"k{n}"))

            async def committed(offset: int) -> bool:
                return await committed_offset(settings, PROCESS, "kill9", 0) == offset

            await until(lambda: offsets("done") == set(range(5)), what="first five done")
            await until(lambda: committed(5), what="first five committed")

            slow = await producer.publish(PROCESS, process_message(5, "slow"))
            assert placed(slow) == (0, 5)
            for n in range(6, 10):
                await producer.publish(PROCESS, process_message(n, f"k{n}"))
            await until(
                lambda: offsets("done") == {0, 1, 2, 3, 4, 6, 7, 8, 9} and 5 in offsets("started"),
                what="the records after the slow one done while it runs",
            )
            assert await committed(5)  # not past the slow record
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)

    again: list[int] = []

    async def handle(_payload: Any, delivery: Delivery) -> None:
        again.append(delivery.offset)

    successor = Bus(settings)
    successor.consumer.subscribe(PROCESS, handle, group="kill9")
    async with successor:
        await until(lambda: committed(10), what="the successor committed everything")
    assert sorted(again) == [5, 6, 7, 8, 9]


async def test_a_rebalance_waits_for_in_flight_records_and_commits_them(
    kafka_settings: KafkaSettings,
) -> None:
    await ensure_topics(kafka_settings, PIPELINE_TOPICS)
    gate = asyncio.Event()
    handled: list[tuple[str, int, int]] = []

    def handler(name: str) -> Any:
        async def handle(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
            if payload.queue == "hold":
                await asyncio.wait_for(gate.wait(), 60)
            handled.append((name, delivery.partition, delivery.offset))

        return handle

    first = Bus(kafka_settings)
    subscribed = first.consumer.subscribe(PROCESS, handler("first"), group="rebalance")
    second = Bus(kafka_settings)
    second.consumer.subscribe(PROCESS, handler("second"), group="rebalance")
    placed_at: set[tuple[int, int]] = set()
    async with first:
        placed_at.add(placed(await first.publish(PROCESS, process_message(0, "hold"))))
        for n in range(1, 20):
            placed_at.add(placed(await first.publish(PROCESS, process_message(n, f"k{n}"))))
        await until(lambda: len(handled) == 19, what="all but the held record handled")

        joining = asyncio.create_task(second.start())
        flow = first.consumer.flow(subscribed)
        await until(lambda: flow.revoking > 0, what="the first consumer revoking")
        gate.set()
        await joining
        try:
            for n in range(20, 40):
                placed_at.add(placed(await first.publish(PROCESS, process_message(n, f"k{n}"))))
            await until(
                lambda: {(p, o) for _, p, o in handled} >= placed_at,
                what="every record handled",
            )
        finally:
            await second.stop()

    seen = [(p, o) for _, p, o in handled]
    assert len(seen) == len(set(seen)) == 40, "a record was handled twice"
    assert {name for name, _, _ in handled[20:]} == {"first", "second"}


async def test_a_full_window_pauses_only_its_own_partition(kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings, PIPELINE_TOPICS)
    release = asyncio.Event()
    handled: list[tuple[int, int]] = []

    async def handle(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
        if payload.queue == "hold":
            await asyncio.wait_for(release.wait(), 60)
        handled.append((delivery.partition, delivery.offset))

    bus = Bus(kafka_settings)
    subscribed = bus.consumer.subscribe(PROCESS, handle, group="pause", max_in_flight=2)
    async with bus:
        held = [placed(await bus.publish(PROCESS, process_message(n, "hold"))) for n in range(3)]
        full = held[0][0]
        flow = bus.consumer.flow(subscribed)

        def window_full() -> bool:
            window = flow.windows().get(TopicPartition(kafka_settings.topic(PROCESS), full))
            return window is not None and window.paused

        await until(window_full, what="the held partition's window full and paused")
        elsewhere: list[tuple[int, int]] = []
        n = 0
        while len(elsewhere) < 3:
            n += 1
            where = placed(await bus.publish(PROCESS, process_message(n, f"k{n}")))
            if where[0] != full:
                elsewhere.append(where)
        await until(
            lambda: set(elsewhere) <= set(handled), what="the other partition flowing meanwhile"
        )
        assert not {p for p, _ in handled} & {full}  # the held partition is still held
        release.set()
        await until(
            lambda: set(held) <= set(handled) and len(handled) == 3 + n,
            what="everything handled once released",
        )
    assert len(set(handled)) == len(handled)
