"""An idle consumer asks the broker less often, and a record makes it fast again.

Against the real broker: the wait aiokafka's fetcher puts into its next fetch
request is read back from the started consumer, so a pacer that never slowed a
consumer down (the idle-CPU regression of issue 14), or one that left it slow
after work arrived (a latency regression), fails here.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from harness.messaging import Inbox, process_message
from stovepipe.messaging import PIPELINE_TOPICS, Bus, Delivery, KafkaSettings, dlq, ensure_topics
from stovepipe.messaging.pacing import FetchPacer
from stovepipe.messaging.topics import BACKGROUND_FETCH_WAIT_MS, spec
from stovepipe.testing import until

pytestmark = pytest.mark.broker

PROCESS = "stovepipe.process"


async def test_an_idle_consumer_slows_down_and_a_record_speeds_it_up(
    kafka_settings: KafkaSettings,
) -> None:
    settings = replace(kafka_settings, idle_fetch_max_wait_ms=700, idle_after_s=0.5)
    await ensure_topics(settings, PIPELINE_TOPICS)
    bus = Bus(settings)
    inbox = Inbox()
    pacer = bus.consumer.pacer
    waits_while_handling: list[int | None] = []

    async def handler(payload: Any, delivery: Delivery) -> None:
        waits_while_handling.append(pacer.wait_ms(subscriber.consumer))  # type: ignore[attr-defined]
        await inbox.add(payload, delivery)

    subscriber = bus.consumer.subscribe(PROCESS, handler, group="pacing")
    async with bus:
        bus.consumer.pace(subscriber)
        consumer = subscriber.consumer  # type: ignore[attr-defined]
        assert pacer.wait_ms(consumer) == settings.fetch_max_wait_ms

        async def slowed() -> bool:
            return pacer.wait_ms(consumer) == 700

        await until(slowed, what="the idle consumer to ask for the idle wait")
        await bus.publish(PROCESS, process_message(1))
        await inbox.wait_for(1)
        await until(slowed, what="the consumer to slow down again once quiet")
        await bus.publish(PROCESS, process_message(2))
        await inbox.wait_for(2)
    assert inbox.payloads == [process_message(1), process_message(2)]
    assert waits_while_handling == [settings.fetch_max_wait_ms] * 2


async def test_a_consumer_is_not_idle_while_a_handler_runs(kafka_settings: KafkaSettings) -> None:
    settings = replace(kafka_settings, idle_fetch_max_wait_ms=700, idle_after_s=0.3)
    await ensure_topics(settings, PIPELINE_TOPICS)
    bus = Bus(settings)
    inbox = Inbox()
    pacer = bus.consumer.pacer
    release = asyncio.Event()
    handling = asyncio.Event()

    async def slow(payload: Any, delivery: Delivery) -> None:
        handling.set()
        await release.wait()
        await inbox.add(payload, delivery)

    subscriber = bus.consumer.subscribe(PROCESS, slow, group="busy")
    async with bus:
        bus.consumer.pace(subscriber)
        consumer = subscriber.consumer  # type: ignore[attr-defined]
        await bus.publish(PROCESS, process_message(1))
        await asyncio.wait_for(handling.wait(), 60)
        ticks = pacer.ticks

        async def quiet_periods_passed() -> bool:
            return pacer.ticks >= ticks + 4  # two idle periods with the handler running

        await until(quiet_periods_passed, what="the idle check to run")
        assert pacer.wait_ms(consumer) == settings.fetch_max_wait_ms
        release.set()
        await inbox.wait_for(1)


async def test_pacing_is_off_when_the_idle_wait_is_not_longer(
    kafka_settings: KafkaSettings,
) -> None:
    settings = replace(kafka_settings, idle_after_s=0.2)  # idle_fetch_max_wait_ms=0: off
    await ensure_topics(settings, PIPELINE_TOPICS)
    bus = Bus(settings)
    inbox = Inbox()
    subscriber = bus.consumer.subscribe(PROCESS, inbox.handler, group="unpaced")
    async with bus:
        bus.consumer.pace(subscriber)
        consumer = subscriber.consumer  # type: ignore[attr-defined]
        await bus.publish(PROCESS, process_message(1))
        await inbox.wait_for(1)
        assert bus.consumer.pacer.wait_ms(consumer) == settings.fetch_max_wait_ms
        assert bus.consumer.pacer.tracked == 0  # nothing is watched, so nothing slows down
    assert not bus.consumer.pacer.enabled


def test_the_idle_wait_is_never_shorter_than_the_busy_one() -> None:
    pacer = FetchPacer(busy_wait_ms=50, idle_wait_ms=10, idle_after_s=1.0)
    assert pacer.idle_wait_ms == 50 and not pacer.enabled


async def test_a_dead_letter_consumer_waits_longer_than_a_stage_while_busy_and_idle_alike(
    kafka_settings: KafkaSettings,
) -> None:
    """Dead letters are off a head's path: their consumers ask the broker every
    ``BACKGROUND_FETCH_WAIT_MS`` even while records flow (the reconciler's five
    consumers asked every 20 ms in every worker), slow down further when idle, and
    go back to their own wait, not the stage's, when a record arrives."""
    settings = replace(kafka_settings, idle_fetch_max_wait_ms=2_000, idle_after_s=0.4)
    dead_letters = spec(dlq(PROCESS))
    await ensure_topics(settings, [*PIPELINE_TOPICS, dead_letters])
    bus = Bus(settings)
    stage_inbox, dlq_inbox = Inbox(), Inbox()
    pacer = bus.consumer.pacer
    stage = bus.consumer.subscribe(PROCESS, stage_inbox.handler, group="stage-wait")
    background = bus.consumer.subscribe(dead_letters.name, dlq_inbox.handler, group="dlq-wait")
    async with bus:
        bus.consumer.pace(stage)
        bus.consumer.pace(background)
        stage_consumer = stage.consumer  # type: ignore[attr-defined]
        dlq_consumer = background.consumer  # type: ignore[attr-defined]
        assert pacer.wait_ms(stage_consumer) == settings.fetch_max_wait_ms
        assert pacer.wait_ms(dlq_consumer) == BACKGROUND_FETCH_WAIT_MS

        async def both_idle() -> bool:
            return pacer.wait_ms(stage_consumer) == pacer.wait_ms(dlq_consumer) == 2_000

        await until(both_idle, what="both consumers to slow down when idle")
        await bus.publish(dead_letters.name, process_message(1))
        await dlq_inbox.wait_for(1)
        assert pacer.wait_ms(dlq_consumer) == BACKGROUND_FETCH_WAIT_MS
    assert dead_letters.fetch_wait_ms == BACKGROUND_FETCH_WAIT_MS
    assert spec(PROCESS).fetch_wait_ms is None  # the pipeline's hops keep the short wait
