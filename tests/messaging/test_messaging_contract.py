"""Messaging behaviour every broker must show: FastStream's in-memory one and the real one.

Each test runs twice (``[memory]`` and ``[kafka]``) through the same publish and
subscribe wiring; what only a real broker can show (redelivery, commits,
partitions) lives in ``test_real_broker.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.messaging import EXPECTED_KEYS, SAMPLES, Harness, Inbox, PolicyProbe, process_message
from stovepipe.messaging import (
    Delivery,
    MalformedMessage,
    Outcome,
    current_delivery,
    payload_type_name,
    spec,
)
from stovepipe.messaging import headers as hdr
from stovepipe.v1 import topics_pb2


@pytest.mark.parametrize("topic", sorted(SAMPLES))
async def test_each_topic_delivers_its_payload_with_its_key(messaging: Harness, topic: str) -> None:
    inbox = Inbox()
    bus = messaging.bus()
    bus.consumer.subscribe(topic, inbox.handler, group="roundtrip")
    async with messaging.running(bus):
        published = await bus.publish(topic, SAMPLES[topic])
        [(payload, delivery)] = await inbox.wait_for(1)

    assert type(payload) is spec(topic).payload
    assert payload == SAMPLES[topic]
    assert delivery.key == EXPECTED_KEYS[topic] == published.key
    assert delivery.topic == messaging.settings.topic(topic) == published.topic
    assert delivery.attempt == 1
    assert delivery.headers[hdr.PAYLOAD_TYPE] == payload_type_name(type(SAMPLES[topic]))
    if messaging.real:
        assert (delivery.partition, delivery.offset) == (published.partition, published.offset)


async def test_an_explicit_key_overrides_the_topic_rule(messaging: Harness) -> None:
    inbox = Inbox()
    bus = messaging.bus()
    bus.consumer.subscribe("stovepipe.process", inbox.handler, group="key")
    async with messaging.running(bus):
        await bus.publish("stovepipe.process", process_message(1), key="another-key")
        [(_, delivery)] = await inbox.wait_for(1)
    assert delivery.key == b"another-key"


async def test_attempt_and_redacted_failure_reason_travel_in_headers(messaging: Harness) -> None:
    inbox = Inbox()
    bus = messaging.bus()
    bus.consumer.subscribe("stovepipe.build", inbox.handler, group="attempt")
    async with messaging.running(bus):
        await bus.publish(
            "stovepipe.build",
            topics_pb2.BuildMessage(request_id="request/q/9", queue="q"),
            attempt=3,
            failure_reason="runner said:\n  unavailable   (token=s3cr3t)",
        )
        [(_, delivery)] = await inbox.wait_for(1)
    assert delivery.attempt == 3
    assert delivery.failure_reason == "runner said: unavailable (token=***"


async def test_caller_headers_arrive_but_cannot_forge_the_reserved_ones(
    messaging: Harness,
) -> None:
    inbox = Inbox()
    bus = messaging.bus()
    bus.consumer.subscribe("stovepipe.process", inbox.handler, group="headers")
    async with messaging.running(bus):
        await bus.publish(
            "stovepipe.process",
            process_message(2),
            headers={"x-team": "release", hdr.ATTEMPT: "9", hdr.PAYLOAD_TYPE: "evil.Type"},
            attempt=2,
        )
        [(_, delivery)] = await inbox.wait_for(1)
    assert delivery.headers["x-team"] == "release"
    assert delivery.attempt == 2
    assert delivery.headers[hdr.PAYLOAD_TYPE] == "stovepipe.v1.ProcessMessage"


async def test_trace_context_travels_from_publish_to_handler(messaging: Harness) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[trace.SpanContext] = []
    inbox = Inbox()

    async def handler(payload: Any, delivery: Delivery) -> None:
        seen.append(trace.get_current_span().get_span_context())
        await inbox.add(payload, delivery)

    bus = messaging.bus(tracer_provider=provider)
    bus.consumer.subscribe("stovepipe.record", handler, group="trace")
    async with messaging.running(bus):
        with provider.get_tracer("test").start_as_current_span("caller") as caller:
            await bus.publish("stovepipe.record", SAMPLES["stovepipe.record"])
        await inbox.wait_for(1)
    provider.shutdown()

    trace_id = caller.get_span_context().trace_id
    assert [s.trace_id for s in seen] == [trace_id]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    publish, process = spans["publish stovepipe.record"], spans["process stovepipe.record"]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert process.kind is trace.SpanKind.CONSUMER
    assert publish.context is not None and process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert {publish.context.trace_id, process.context.trace_id} == {trace_id}


async def test_the_wrong_payload_type_is_refused_before_producing(messaging: Harness) -> None:
    inbox = Inbox()
    bus = messaging.bus()
    bus.consumer.subscribe("stovepipe.process", inbox.handler, group="wrong-type")
    async with messaging.running(bus):
        with pytest.raises(MalformedMessage, match="carries ProcessMessage, not BuildMessage"):
            await bus.publish("stovepipe.process", SAMPLES["stovepipe.build"])
        await bus.publish("stovepipe.process", process_message(3))
        await inbox.wait_for(1)
    assert inbox.payloads == [process_message(3)]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (topics_pb2.ProcessMessage(request_id="request/q/1"), "lacks queue"),
        (topics_pb2.ProcessMessage(request_id="r", queue="q" * 2_000), "exceeds 1024"),
    ],
    ids=["missing-ids", "oversize"],
)
async def test_invalid_payloads_are_refused_before_producing(
    messaging: Harness, message: topics_pb2.ProcessMessage, error: str
) -> None:
    messaging.settings = replace(messaging.settings, max_message_bytes=1024)
    bus = messaging.bus()
    async with messaging.running(bus):
        with pytest.raises(MalformedMessage, match=error):
            await bus.publish("stovepipe.process", message)


async def test_garbage_on_a_topic_reaches_the_policy_as_malformed(messaging: Harness) -> None:
    inbox = Inbox()
    policy = PolicyProbe(Outcome.SETTLED)
    bus = messaging.bus(failure_policy=policy)
    bus.consumer.subscribe("stovepipe.process", inbox.handler, group="garbage")
    physical = messaging.settings.topic("stovepipe.process")
    async with messaging.running(bus):
        await bus.publish_raw(physical, b"\xff\xfe not protobuf", key=b"q", headers={})
        await policy.wait_for(1)
        await bus.publish("stovepipe.process", process_message(4))
        await inbox.wait_for(1)

    [(error, topic, delivery)] = policy.calls
    assert isinstance(error, MalformedMessage)
    assert topic == "stovepipe.process"
    assert (delivery.topic, delivery.key, delivery.value) == (
        physical,
        b"q",
        b"\xff\xfe not protobuf",
    )
    assert inbox.payloads == [process_message(4)]


async def test_a_record_labelled_with_another_type_is_malformed(messaging: Harness) -> None:
    inbox = Inbox()
    policy = PolicyProbe(Outcome.SETTLED)
    bus = messaging.bus(failure_policy=policy)
    bus.consumer.subscribe("stovepipe.process", inbox.handler, group="label")
    async with messaging.running(bus):
        await bus.publish_raw(
            messaging.settings.topic("stovepipe.process"),
            process_message(5).SerializeToString(),
            key=b"q",
            headers={hdr.PAYLOAD_TYPE: "stovepipe.v1.BuildMessage"},
        )
        await policy.wait_for(1)
    [(error, _, _)] = policy.calls
    assert isinstance(error, MalformedMessage)
    assert "the record says stovepipe.v1.BuildMessage" in str(error)
    assert inbox.items == []


async def test_a_handler_error_goes_to_the_policy_with_its_delivery(messaging: Harness) -> None:
    policy = PolicyProbe(Outcome.SETTLED)
    handled: list[str] = []
    inbox = Inbox()

    async def handler(payload: topics_pb2.ProcessMessage, delivery: Delivery) -> None:
        handled.append(payload.request_id)
        if payload.request_id == "request/q/6":
            raise LookupError("queue q is not configured")
        await inbox.add(payload, delivery)

    bus = messaging.bus(failure_policy=policy)
    bus.consumer.subscribe("stovepipe.process", handler, group="errors")
    async with messaging.running(bus):
        published = await bus.publish("stovepipe.process", process_message(6))
        await policy.wait_for(1)
        await bus.publish("stovepipe.process", process_message(7))
        await inbox.wait_for(1)

    [(error, topic, delivery)] = policy.calls
    assert isinstance(error, LookupError)
    assert topic == "stovepipe.process"
    assert delivery.key == b"q"
    assert delivery.attempt == 1
    if messaging.real:
        assert (delivery.partition, delivery.offset) == (published.partition, published.offset)
    assert handled == ["request/q/6", "request/q/7"]


async def test_a_payload_only_handler_finds_its_delivery_in_context(messaging: Harness) -> None:
    seen: list[tuple[topics_pb2.ProcessMessage, Delivery]] = []
    inbox = Inbox()

    async def stage_handler(payload: topics_pb2.ProcessMessage) -> None:
        delivery = current_delivery.get()
        seen.append((payload, delivery))
        await inbox.add(payload, delivery)

    bus = messaging.bus()
    bus.subscribe("stovepipe.process", stage_handler, group="stage")
    async with messaging.running(bus):
        await bus.publish("stovepipe.process", process_message(8), attempt=2)
        await inbox.wait_for(1)
    [(payload, delivery)] = seen
    assert payload == process_message(8)
    assert delivery.attempt == 2
    assert current_delivery.get(None) is None
