"""The WatchEvents feed: one group-less reader, fan-out, storage-checked events, no leaks.

Runs on the real broker and a migrated SQLite store; events are produced
straight to ``stovepipe.hook`` as a foreign producer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from harness.event_feed import events
from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, connection_options, serve_api
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.grpcutil import GrpcServer
from stovepipe.hooks.events import VERDICT_RECORDED
from stovepipe.messaging import HOOK, Bus, KafkaSettings, ensure_topics
from stovepipe.runtime import event_feed
from stovepipe.runtime.event_feed import EventFeed, TooManySubscribers
from stovepipe.storage import Store, create_engine
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2, types_pb2

QUEUE = "feed/main"


@pytest.fixture
async def sqlite_store(migrated_sqlite_url: str) -> AsyncIterator[Store]:
    engine = create_engine(migrated_sqlite_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[Bus]:
    await ensure_topics(kafka_settings, [HOOK.name])
    bus = Bus(kafka_settings)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


def _fact(uri: str, degree: float, origin: FactOrigin = FactOrigin.BUILD) -> ValidationFact:
    return ValidationFact(
        queue=QUEUE,
        uri=uri,
        project="",
        degree=degree,
        request_id=f"request/{QUEUE}/1",
        origin=origin,
        created_at=datetime.now(UTC),
    )


def _event(uri: str, *, green: bool, event_id: str) -> topics_pb2.HookEvent:
    return topics_pb2.HookEvent(
        id=event_id,
        source=f"/stovepipe/queues/{QUEUE}",
        type=VERDICT_RECORDED,
        spec_version="1.0",
        subject=QUEUE,
        data=topics_pb2.GreennessEventData(
            queue=QUEUE,
            uri=uri,
            degree=0.0 if green else 1.0,
            green=green,
            origin=types_pb2.FACT_ORIGIN_BUILD,
            request_id=f"request/{QUEUE}/1",
            attempt=1,
        ),
    )


async def _collect(
    feed: EventFeed, count: int, owner: str = ""
) -> tuple[asyncio.Task[list[topics_pb2.HookEvent]], asyncio.Event]:
    subscribed = asyncio.Event()
    received: list[topics_pb2.HookEvent] = []

    async def run() -> list[topics_pb2.HookEvent]:
        stream = events(feed, owner)
        assert isinstance(stream, AsyncGenerator)  # so it can be closed
        first = asyncio.ensure_future(anext(stream))
        await until(feed._positioned.is_set, what="the feed positioned", interval_s=0.02)
        subscribed.set()
        received.append(await first)
        while len(received) < count:
            received.append(await anext(stream))
        await stream.aclose()
        return received

    task = asyncio.create_task(run())
    await asyncio.wait_for(subscribed.wait(), 30)
    return task, subscribed


async def test_only_events_that_storage_confirms_are_served(
    kafka_settings: KafkaSettings, sqlite_store: Store, producer: Bus
) -> None:
    await sqlite_store.create_fact(_fact("uri-green", 0.0))
    await sqlite_store.create_fact(_fact("uri-broken", 1.0))
    feed = EventFeed(kafka_settings, sqlite_store)
    try:
        task, _ = await _collect(feed, 2)
        # Forged: no fact at all, and "green" for a commit whose fact is broken.
        await producer.publish(HOOK.name, _event("uri-unknown", green=True, event_id="f1"))
        await producer.publish(HOOK.name, _event("uri-broken", green=True, event_id="f2"))
        # True events.
        await producer.publish(HOOK.name, _event("uri-broken", green=False, event_id="t1"))
        await producer.publish(HOOK.name, _event("uri-green", green=True, event_id="t2"))
        served = await asyncio.wait_for(task, 30)
    finally:
        await feed.close()
    assert sorted(e.id for e in served) == ["t1", "t2"]
    by_uri = {e.data.uri: e for e in served}
    assert by_uri["uri-green"].data.green and not by_uri["uri-broken"].data.green
    assert feed.dropped_unverified == 2


async def test_one_reader_fans_out_to_every_subscriber_and_joins_no_group(
    kafka_settings: KafkaSettings,
    sqlite_store: Store,
    producer: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tansu does not list groups, so the consumers the feed builds are recorded instead."""
    built: list[dict[str, object]] = []

    class RecordedConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *topics: str, **options: object) -> None:
            built.append(options)
            super().__init__(*topics, **options)

    monkeypatch.setattr(event_feed, "AIOKafkaConsumer", RecordedConsumer)
    await sqlite_store.create_fact(_fact("uri-1", 0.0))
    feed = EventFeed(kafka_settings, sqlite_store)
    try:
        tasks = [(await _collect(feed, 1, owner=f"o{i}"))[0] for i in range(5)]
        reader = feed._reader
        await producer.publish(HOOK.name, _event("uri-1", green=True, event_id="e1"))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert feed._reader is None  # the last subscriber gone, the reader stopped
        assert reader is not None and reader.done()
    finally:
        await feed.close()
    assert [[e.id for e in r] for r in results] == [["e1"]] * 5
    assert len(built) == 1
    assert built[0]["group_id"] is None and built[0]["enable_auto_commit"] is False


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_abandoned_streams_leave_nothing_open(
    kafka_settings: KafkaSettings, sqlite_store: Store
) -> None:
    feed = EventFeed(kafka_settings, sqlite_store)
    await ensure_topics(kafka_settings, [HOOK.name])

    async def watch_then_give_up() -> None:
        stream = events(feed, "gate")
        assert isinstance(stream, AsyncGenerator)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.3)  # a gate's deadline passes
        await stream.aclose()

    try:
        await watch_then_give_up()  # warm up: imports, first connection
        before = _open_fds()
        for _ in range(3):
            await asyncio.gather(*(watch_then_give_up() for _ in range(20)))
        assert feed.subscriber_count == 0
        assert feed._reader is None
        assert _open_fds() <= before + 3
    finally:
        await feed.close()


async def test_streams_beyond_the_cap_are_refused(
    kafka_settings: KafkaSettings, sqlite_store: Store
) -> None:
    await ensure_topics(kafka_settings, [HOOK.name])
    feed = EventFeed(kafka_settings, sqlite_store, max_subscribers=3, max_per_owner=2)
    try:
        held = [(await _collect(feed, 1, owner="a"))[0] for _ in range(2)]
        with pytest.raises(TooManySubscribers, match="this caller"):
            await anext(events(feed, "a"))
        other = (await _collect(feed, 1, owner="b"))[0]
        with pytest.raises(TooManySubscribers):
            await anext(events(feed, "c"))
        for task in [*held, other]:
            task.cancel()
        await asyncio.gather(*held, other, return_exceptions=True)
        assert feed.subscriber_count == 0
    finally:
        await feed.close()


async def _served_with_feed(
    store: Store, feed: EventFeed, options: list[tuple[str, int]] | None = None
) -> tuple[GrpcServer, grpc.aio.Channel, Any]:
    pipe = Pipeline(store, [queue_config(QUEUE)])
    api = StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator, events=feed)
    server = await serve_api(api, "127.0.0.1:0", options=options or [])
    channel = grpc.aio.insecure_channel(server.address)
    return server, channel, pb_grpc.StovepipeServiceStub(channel)


async def test_the_api_answers_resource_exhausted_beyond_the_callers_cap(
    kafka_settings: KafkaSettings, sqlite_store: Store
) -> None:
    await ensure_topics(kafka_settings, [HOOK.name])
    feed = EventFeed(kafka_settings, sqlite_store, max_per_owner=1)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    first = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
    try:
        await until(lambda: feed.subscriber_count == 1)
        second = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await second.read()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert feed.subscriber_count == 1  # the first stream is untouched
    finally:
        first.cancel()
        await channel.close(None)
        await server.stop(0)
        await feed.close()


async def test_an_old_connection_is_asked_to_go_and_its_stream_is_released(
    kafka_settings: KafkaSettings, sqlite_store: Store
) -> None:
    """max_connection_age: a watch cannot hold its place for ever; the client reconnects."""
    await ensure_topics(kafka_settings, [HOOK.name])
    feed = EventFeed(kafka_settings, sqlite_store)
    options = connection_options(keepalive_s=60, max_connection_age_s=1, grace_s=1)
    server, channel, stub = await _served_with_feed(sqlite_store, feed, options)
    stream = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
    try:
        await until(lambda: feed.subscriber_count == 1)
        first = await asyncio.wait_for(stream.read(), 30)
        assert first.ready
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(stream.read(), 30)
        assert ended.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        await until(lambda: feed.subscriber_count == 0)
    finally:
        stream.cancel()
        await channel.close(None)
        await server.stop(0)
        await feed.close()


async def _record(store: Store, producer: Bus, uri: str, event_id: str) -> None:
    """A verdict as the record stage leaves it: the fact stored, then its event published."""
    await store.create_fact(_fact(uri, 0.0))
    await producer.publish(HOOK.name, _event(uri, green=True, event_id=event_id))


async def test_the_first_response_says_ready_and_a_verdict_100_ms_later_reaches_the_stream(
    kafka_settings: KafkaSettings, sqlite_store: Store, producer: Bus
) -> None:
    feed = EventFeed(kafka_settings, sqlite_store)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    stream = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
    try:
        first = await asyncio.wait_for(stream.read(), 30)
        assert first.ready and not first.HasField("event") and first.cursor
        await asyncio.sleep(0.1)
        await _record(sqlite_store, producer, "uri-after-ready", "e-after")
        second = await asyncio.wait_for(stream.read(), 30)
        assert (second.event.id, second.event.data.uri) == ("e-after", "uri-after-ready")
        assert not second.ready and second.cursor != first.cursor
    finally:
        stream.cancel()
        await channel.close(None)
        await server.stop(0)
        await feed.close()


async def test_a_reconnecting_watcher_resumes_from_its_cursor_and_misses_nothing(
    kafka_settings: KafkaSettings, sqlite_store: Store, producer: Bus
) -> None:
    feed = EventFeed(kafka_settings, sqlite_store)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    try:
        stream = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
        ready = await asyncio.wait_for(stream.read(), 30)
        await _record(sqlite_store, producer, "uri-1", "e1")
        seen = await asyncio.wait_for(stream.read(), 30)
        assert seen.event.id == "e1"
        stream.cancel()  # disconnected: two verdicts are recorded meanwhile
        await until(lambda: feed.subscriber_count == 0)
        await _record(sqlite_store, producer, "uri-2", "e2")
        await _record(sqlite_store, producer, "uri-3", "e3")

        resumed = stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE], cursor=seen.cursor))
        first = await asyncio.wait_for(resumed.read(), 30)
        assert first.ready and first.cursor == seen.cursor
        caught_up = [(await asyncio.wait_for(resumed.read(), 30)).event.id for _ in range(2)]
        assert sorted(caught_up) == ["e2", "e3"]
        await _record(sqlite_store, producer, "uri-4", "e4")  # and it goes on live
        assert (await asyncio.wait_for(resumed.read(), 30)).event.id == "e4"
        resumed.cancel()

        everything = stub.WatchEvents(pb.WatchEventsRequest(from_beginning=True))
        assert (await asyncio.wait_for(everything.read(), 30)).ready
        ids = [(await asyncio.wait_for(everything.read(), 30)).event.id for _ in range(4)]
        assert sorted(ids) == ["e1", "e2", "e3", "e4"]
        everything.cancel()

        from_ready = stub.WatchEvents(pb.WatchEventsRequest(cursor=ready.cursor))
        assert (await asyncio.wait_for(from_ready.read(), 30)).ready
        ids = [(await asyncio.wait_for(from_ready.read(), 30)).event.id for _ in range(4)]
        assert sorted(ids) == ["e1", "e2", "e3", "e4"]
        from_ready.cancel()
        await until(lambda: feed.subscriber_count == 0)
    finally:
        await channel.close(None)
        await server.stop(0)
        await feed.close()


WAIT_URI = "fake+0123456789abcdef#main@" + "c0ffee" * 6 + "c0ff"


async def test_wait_for_greenness_is_woken_by_a_verified_event_and_ends_final(
    kafka_settings: KafkaSettings, sqlite_store: Store, producer: Bus
) -> None:
    await sqlite_store.create_request(QUEUE, WAIT_URI, trigger="test", now=datetime.now(UTC))
    feed = EventFeed(kafka_settings, sqlite_store)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    try:
        stream = stub.WaitForGreenness(
            pb.WaitForGreennessRequest(queue=QUEUE, uri="c0ffeec0"), timeout=60
        )
        first = await stream.read()
        assert not first.final and first.uri == WAIT_URI
        await until(lambda: feed.subscriber_count == 1 and feed._positioned.is_set())
        await sqlite_store.create_fact(_fact(WAIT_URI, 0.0))
        await producer.publish(HOOK.name, _event(WAIT_URI, green=True, event_id="w1"))
        last = first
        while not last.final:
            last = await asyncio.wait_for(stream.read(), 30)
        assert last.status == pb.GREENNESS_STATUS_RECORDED and last.fact.degree == 0.0
        await until(lambda: feed.subscriber_count == 0)
    finally:
        await channel.close(None)
        await server.stop(0)
        await feed.close()


@pytest.mark.parametrize(
    "request_",
    [
        pb.WatchEventsRequest(cursor="not a cursor"),
        pb.WatchEventsRequest(cursor="v1;0=" + "9" * 40),
        pb.WatchEventsRequest(cursor="v1;0=1", from_beginning=True),
        pb.WatchEventsRequest(cursor="v1" + ";0=1" * 2000),
    ],
)
async def test_a_cursor_this_server_did_not_hand_out_is_invalid_argument(
    kafka_settings: KafkaSettings, sqlite_store: Store, request_: pb.WatchEventsRequest
) -> None:
    await ensure_topics(kafka_settings, [HOOK.name])
    feed = EventFeed(kafka_settings, sqlite_store)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(stub.WatchEvents(request_).read(), 30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert feed.subscriber_count == 0
    finally:
        await channel.close(None)
        await server.stop(0)
        await feed.close()


async def test_wait_for_greenness_shares_the_stream_caps_and_frees_its_place_at_the_deadline(
    kafka_settings: KafkaSettings, sqlite_store: Store
) -> None:
    await ensure_topics(kafka_settings, [HOOK.name])
    await sqlite_store.create_request(QUEUE, WAIT_URI, trigger="test", now=datetime.now(UTC))
    feed = EventFeed(kafka_settings, sqlite_store, max_per_owner=1)
    server, channel, stub = await _served_with_feed(sqlite_store, feed)
    try:
        held = stub.WaitForGreenness(
            pb.WaitForGreennessRequest(queue=QUEUE, uri=WAIT_URI), timeout=3
        )
        assert not (await held.read()).final
        await until(lambda: feed.subscriber_count == 1)
        for refused in (
            stub.WaitForGreenness(pb.WaitForGreennessRequest(queue=QUEUE, uri=WAIT_URI)),
            stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE])),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _answer in refused:
                    pass
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        async def read_to_the_end() -> None:
            while await held.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await read_to_the_end()
        assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await until(lambda: feed.subscriber_count == 0)
    finally:
        await channel.close(None)
        await server.stop(0)
        await feed.close()


async def test_an_idle_reader_fetches_slowly_stays_caught_up_and_speeds_up_on_an_event(
    kafka_settings: KafkaSettings, sqlite_store: Store, producer: Bus
) -> None:
    """The idle-CPU regression of issue 14: the API's reader asked the broker ~50 times a
    second for ever. Idle, it now waits ``IDLE_FETCH_WAIT_MS`` per fetch (not the stage
    consumers' seconds, which would break the gate cache's caught-up rule); an event
    makes it fast again."""
    settings = dataclasses.replace(kafka_settings, idle_fetch_max_wait_ms=2_000, idle_after_s=0.4)
    await sqlite_store.create_fact(_fact("uri-idle", 0.0))
    feed = EventFeed(settings, sqlite_store)
    feed.observe(lambda queue, project: None)  # as the gate cache does: the reader stays
    try:
        task, _ = await _collect(feed, 1)
        pacer = feed._pacer

        def wait_ms() -> int | None:
            consumer = feed._live_consumer
            return None if consumer is None else pacer.wait_ms(consumer)

        await until(
            lambda: wait_ms() == event_feed.IDLE_FETCH_WAIT_MS, what="the idle reader slowed"
        )
        await until(lambda: feed.caught_up(1.0), what="the idle reader caught up within 1 s")
        await producer.publish(HOOK.name, _event("uri-idle", green=True, event_id="i1"))
        served = await asyncio.wait_for(task, 30)
        assert [e.id for e in served] == ["i1"]
        assert wait_ms() == settings.fetch_max_wait_ms  # fast again after the event
    finally:
        await feed.close()


async def test_a_served_event_takes_its_trigger_from_storage_in_one_read(
    sqlite_store: Store,
) -> None:
    """The event says why its Request exists; only storage may. Every verdict event the
    feed and the hooks serve is confirmed this way, so the check is one statement."""
    from harness.db_round_trips import counting
    from stovepipe.runtime.event_feed import verified_event

    request, _ = await sqlite_store.create_request(
        QUEUE,
        "uri-why",
        trigger="upstream",
        now=datetime.now(UTC),
        trigger_details=(("upstream_queue", "lib/main"),),
    )
    fact = dataclasses.replace(_fact("uri-why", 0.0), request_id=request.id)
    await sqlite_store.create_fact(fact)
    event = _event("uri-why", green=True, event_id="why")
    event.data.request_id = request.id
    event.data.trigger = "forged"
    event.data.trigger_details["upstream_queue"] = "forged/main"
    event.data.trigger_details["extra"] = "forged"
    with counting(sqlite_store) as trips:
        served = await verified_event(sqlite_store, event, "test")
    assert served is not None
    assert served.data.trigger == "upstream"
    assert dict(served.data.trigger_details) == {"upstream_queue": "lib/main"}
    assert trips.transactions == 1 and trips.by_verb["SELECT"] == 1
