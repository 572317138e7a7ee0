"""Topic bindings, keys and the codec (no broker needed)."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from stovepipe.messaging import PIPELINE_TOPICS, MalformedMessage, decode, encode, spec
from stovepipe.messaging.topics import BUILD, BUILDSIGNAL, HOOK, PROCESS, RECORD
from stovepipe.v1 import topics_pb2

SAMPLES: dict[str, Message] = {
    "stovepipe.process": topics_pb2.ProcessMessage(request_id="request/q/1", queue="q"),
    "stovepipe.build": topics_pb2.BuildMessage(request_id="request/q/1", queue="q"),
    "stovepipe.buildsignal": topics_pb2.BuildSignalMessage(
        build_id="b1", request_id="request/q/1", queue="q"
    ),
    "stovepipe.record": topics_pb2.RecordMessage(request_id="request/q/1", queue="q"),
    "stovepipe.analyze": topics_pb2.AnalyzeMessage(request_id="request/q/1", queue="q"),
    "stovepipe.hook": topics_pb2.HookEvent(
        id="e", data=topics_pb2.GreennessEventData(request_id="request/q/1", queue="q")
    ),
}


def test_every_topic_round_trips_its_payload_and_binds_one_type() -> None:
    assert {t.name for t in PIPELINE_TOPICS} == set(SAMPLES)
    assert len({t.payload for t in PIPELINE_TOPICS}) == len(PIPELINE_TOPICS)
    for name, message in SAMPLES.items():
        topic = spec(name)
        assert decode(topic, encode(topic, message)) == message
        others = [m for n, m in SAMPLES.items() if type(m) is not topic.payload]
        with pytest.raises(TypeError):
            encode(topic, others[0])


def test_partition_keys_follow_the_design() -> None:
    assert PROCESS.key(SAMPLES["stovepipe.process"]) == "q"
    assert BUILD.key(SAMPLES["stovepipe.build"]) == "request/q/1"
    assert BUILDSIGNAL.key(SAMPLES["stovepipe.buildsignal"]) == "b1"
    assert RECORD.key(SAMPLES["stovepipe.record"]) == "request/q/1"
    assert HOOK.key(SAMPLES["stovepipe.hook"]) == "request/q/1"


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"", None])
def test_garbage_is_malformed(data: bytes | None) -> None:
    with pytest.raises(MalformedMessage):
        decode(PROCESS, data)


def test_oversize_payload_is_malformed() -> None:
    big = topics_pb2.ProcessMessage(request_id="request/q/1", queue="q" * 2000)
    with pytest.raises(MalformedMessage, match="exceeds"):
        encode(PROCESS, big, max_bytes=100)
    with pytest.raises(MalformedMessage, match="exceeds"):
        decode(PROCESS, big.SerializeToString(), max_bytes=100)
