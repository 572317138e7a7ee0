"""Topic bindings, keys, the codec, headers and settings: no broker needed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from harness.messaging import EXPECTED_KEYS, SAMPLES
from stovepipe.messaging import (
    PIPELINE_TOPICS,
    Delivery,
    KafkaSettings,
    MalformedMessage,
    decode,
    dlq,
    encode,
    payload_type_name,
    poison,
    spec,
)
from stovepipe.messaging import headers as hdr
from stovepipe.messaging.consumer import commit_offset
from stovepipe.v1 import topics_pb2

PROCESS = spec("stovepipe.process")


def test_the_pipeline_topics_are_the_six_of_the_design() -> None:
    assert [t.name for t in PIPELINE_TOPICS] == [
        "stovepipe.process",
        "stovepipe.build",
        "stovepipe.buildsignal",
        "stovepipe.record",
        "stovepipe.analyze",
        "stovepipe.hook",
    ]


def test_each_topic_is_bound_to_exactly_one_type_of_its_own() -> None:
    payloads = [t.payload for t in PIPELINE_TOPICS]
    assert len(set(payloads)) == len(payloads)
    assert {t.name: t.payload for t in PIPELINE_TOPICS} == {
        name: type(message) for name, message in SAMPLES.items()
    }


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_every_payload_round_trips_and_no_other_type_is_accepted(topic: str) -> None:
    binding = spec(topic)
    assert decode(binding, encode(binding, SAMPLES[topic])) == SAMPLES[topic]
    for other in (m for m in SAMPLES.values() if type(m) is not binding.payload):
        with pytest.raises(MalformedMessage, match=f"carries {binding.payload.__name__}"):
            encode(binding, other)


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_keys_follow_the_design(topic: str) -> None:
    assert spec(topic).key(SAMPLES[topic]).encode() == EXPECTED_KEYS[topic]


def test_dead_letters_keep_the_source_binding_and_poison_is_named() -> None:
    for topic in PIPELINE_TOPICS:
        dead = spec(dlq(topic.name))
        assert (dead.name, dead.payload, dead.key) == (
            f"{topic.name}.dlq",
            topic.payload,
            topic.key,
        )
        assert poison(topic.name) == f"{topic.name}.dlq.poison"
    with pytest.raises(ValueError, match=r"unknown topic 'stovepipe\.nope'"):
        spec("stovepipe.nope")


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff", b"\x0a\x05abc", b"", b"\x12\x02\xc3\x28"],
    ids=["not-protobuf", "truncated", "empty", "invalid-utf8"],
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(PROCESS, data)


def test_a_record_without_value_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="without a value"):
        decode(PROCESS, None)


def test_missing_ids_are_malformed_both_ways() -> None:
    no_queue = topics_pb2.ProcessMessage(request_id="request/q/1")
    with pytest.raises(MalformedMessage, match="lacks queue"):
        encode(PROCESS, no_queue)
    with pytest.raises(MalformedMessage, match="lacks queue"):
        decode(PROCESS, no_queue.SerializeToString())
    event = topics_pb2.HookEvent(id="e", data=topics_pb2.GreennessEventData(queue="q"))
    with pytest.raises(MalformedMessage, match=r"lacks data\.request_id"):
        encode(spec("stovepipe.hook"), event)


def test_oversize_payloads_are_malformed_both_ways() -> None:
    big = topics_pb2.ProcessMessage(request_id="request/q/1", queue="q" * 2_000)
    with pytest.raises(MalformedMessage, match="exceeds 100"):
        encode(PROCESS, big, max_bytes=100)
    with pytest.raises(MalformedMessage, match="exceeds 100"):
        decode(PROCESS, big.SerializeToString(), max_bytes=100)


def test_a_declared_type_must_match_the_topic() -> None:
    data = SAMPLES["stovepipe.process"].SerializeToString()
    assert (
        decode(PROCESS, data, declared_type="stovepipe.v1.ProcessMessage")
        == SAMPLES["stovepipe.process"]
    )
    with pytest.raises(MalformedMessage, match=r"the record says stovepipe\.v1\.HookEvent"):
        decode(PROCESS, data, declared_type="stovepipe.v1.HookEvent")
    assert payload_type_name(topics_pb2.HookEvent) == "stovepipe.v1.HookEvent"


def test_unknown_fields_from_a_newer_producer_are_accepted() -> None:
    newer = SAMPLES["stovepipe.process"].SerializeToString() + b"\xa2\x06\x03new"
    decoded = decode(PROCESS, newer)
    assert (decoded.request_id, decoded.queue) == ("request/q/1", "q")


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [({}, 1), ({hdr.ATTEMPT: "3"}, 3), ({hdr.ATTEMPT: "0"}, 1), ({hdr.ATTEMPT: "x"}, 1)],
)
def test_attempt_is_read_leniently(headers: dict[str, str], attempt: int) -> None:
    assert hdr.attempt_of(headers) == attempt


def test_outgoing_headers_refuse_an_attempt_below_one() -> None:
    with pytest.raises(ValueError, match="attempt starts at 1"):
        hdr.outgoing(0)


def test_failure_reasons_are_one_short_redacted_line() -> None:
    reason = hdr.failure_reason(
        ConnectionError("fetch https://bot:hunter2@git.example/repo\n password=hunter2")
    )
    assert reason == "ConnectionError: fetch https://***@git.example/repo password=***"
    long = hdr.failure_reason("x" * 1_000)
    assert len(long) == hdr.MAX_REASON
    assert long.endswith("...")


def test_a_huge_reason_is_cut_before_it_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a bounded window is ever redacted, so no input size can stall a consumer."""
    from stovepipe import redaction

    seen: list[int] = []
    real = redaction._redact

    def measured(text: str, *, cut: bool) -> str:
        seen.append(len(text))
        return real(text, cut=cut)

    monkeypatch.setattr(redaction, "_redact", measured)
    reason = hdr.failure_reason("password=hunter2 " + "R" * 5_000_000)
    assert seen and max(seen) <= 4 * hdr.MAX_REASON
    assert "hunter2" not in reason and len(reason) == hdr.MAX_REASON


def test_record_headers_tolerate_missing_and_non_utf8_values() -> None:
    assert hdr.from_record([("a", None), ("b", b"\xff"), ("c", b"ok"), ("c", b"last")]) == {
        "a": "",
        "b": "\ufffd",
        "c": "last",
    }


def test_trace_context_survives_inject_and_extract() -> None:
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("producer") as span:
        headers = hdr.outgoing(2)
    assert hdr.TRACEPARENT in headers
    restored = trace.get_current_span(hdr.trace_context(headers)).get_span_context()
    assert restored.trace_id == span.get_span_context().trace_id
    assert restored.span_id == span.get_span_context().span_id
    provider.shutdown()


def test_settings_reject_nonsense_and_name_things() -> None:
    settings = KafkaSettings("127.0.0.1:9092", topic_prefix="ci-7.", group_prefix="sp")
    assert settings.topic("stovepipe.build") == "ci-7.stovepipe.build"
    assert settings.group("build") == "ci-7.sp-build"
    assert settings.fetch_max_wait_ms == 20
    assert settings.stop_timeout_s == settings.graceful_timeout_s + settings.close_timeout_s
    with pytest.raises(FrozenInstanceError):
        settings.partitions = 9  # type: ignore[misc]
    cases: list[dict[str, Any]] = [
        {"bootstrap_servers": " "},
        {"topic_prefix": "has space"},
        {"partitions": 0},
        {"heartbeat_interval_ms": 10_000, "session_timeout_ms": 10_000},
        {"fetch_max_wait_ms": -1},
    ]
    for bad in cases:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            KafkaSettings(**{"bootstrap_servers": "127.0.0.1:9092", **bad})


class _CommitStub:
    def __init__(self, outcome: BaseException | None = None, hang: bool = False) -> None:
        self.outcome = outcome
        self.hang = hang
        self.offsets: list[dict[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.offsets.append(offsets)
        if self.hang:
            await asyncio.Event().wait()
        if self.outcome is not None:
            raise self.outcome


DELIVERY = Delivery("t.stovepipe.process", 1, 41, b"q", {}, b"")


async def test_commit_is_explicit_and_one_past_the_record() -> None:
    stub = _CommitStub()
    assert await commit_offset(stub, DELIVERY, 1.0) is True
    [offsets] = stub.offsets
    [(partition, offset)] = offsets.items()
    assert (partition.topic, partition.partition, offset) == ("t.stovepipe.process", 1, 42)


@pytest.mark.parametrize(
    "stub",
    [
        _CommitStub(CommitFailedError("rebalanced")),
        _CommitStub(IllegalStateError("revoked")),
        _CommitStub(KafkaConnectionError("broker gone")),
        _CommitStub(hang=True),
    ],
    ids=["rebalance", "revoked", "broker-gone", "timeout"],
)
async def test_a_failed_commit_is_tolerated_and_logged(
    stub: _CommitStub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stovepipe.messaging.consumer"):
        assert await commit_offset(stub, DELIVERY, 0.05) is False
    assert "may be delivered again" in caplog.text
