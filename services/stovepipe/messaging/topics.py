"""Topics: each bound to exactly one protobuf payload type and one partition-key rule.

Names here are *logical*; :meth:`KafkaSettings.topic` turns one into the
physical name (with the configured prefix). The key decides the partition, and
with it what is processed in order: a Queue's ``process`` messages by one
consumer at a time, everything about one Request (or one build) in order.

A dead-letter topic ``<topic>.dlq`` carries the original bytes of its source
topic, so it is bound to the same payload type and key. ``<topic>.dlq.poison``
holds dead letters that could not even be decoded: raw bytes, no binding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from stovepipe.v1 import topics_pb2

DLQ_SUFFIX = ".dlq"
POISON_SUFFIX = ".dlq.poison"
BACKGROUND_FETCH_WAIT_MS = 500
"""The fetch wait of a consumer whose records are off the path of a head (dead
letters): a fail-closed verdict half a second later costs nobody anything, while
asking the broker every 20 ms for records that almost never come costs every
process that consumes them CPU for as long as any work flows."""
EVENT_FETCH_WAIT_MS = 100
"""The fetch wait of a consumer of verdict events (``upstream``): a dependent Queue
learns of its upstream's new green commit up to this much later."""


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic, the one payload type it carries, and how its key is derived.

    ``required`` lists the fields (dotted for nested ones) a payload must set to
    be meaningful; a payload without them is malformed.
    """

    name: str
    payload: type[Message]
    key: Callable[[Any], str]
    required: tuple[str, ...] = ()
    fetch_wait_ms: int | None = None
    """How long a consumer's fetch may wait while records flow, when longer than
    ``kafka.fetch_max_wait_ms``; ``None``: that setting. Against the embedded broker,
    which answers a fetch only when its wait runs out, the wait is the latency of
    the hop; the pipeline's own topics keep the setting's short one."""


def _queue(message: topics_pb2.ProcessMessage) -> str:
    return message.queue


def _request_id(
    message: topics_pb2.BuildMessage | topics_pb2.RecordMessage | topics_pb2.AnalyzeMessage,
) -> str:
    return message.request_id


def _build_id(message: topics_pb2.BuildSignalMessage) -> str:
    return message.build_id


def _event_request_id(message: topics_pb2.HookEvent) -> str:
    return message.data.request_id


PROCESS: TopicSpec = TopicSpec(
    "stovepipe.process", topics_pb2.ProcessMessage, _queue, ("request_id", "queue")
)
BUILD: TopicSpec = TopicSpec(
    "stovepipe.build", topics_pb2.BuildMessage, _request_id, ("request_id", "queue")
)
BUILDSIGNAL: TopicSpec = TopicSpec(
    "stovepipe.buildsignal",
    topics_pb2.BuildSignalMessage,
    _build_id,
    ("build_id", "request_id", "queue"),
)
RECORD: TopicSpec = TopicSpec(
    "stovepipe.record", topics_pb2.RecordMessage, _request_id, ("request_id", "queue")
)
ANALYZE: TopicSpec = TopicSpec(
    "stovepipe.analyze", topics_pb2.AnalyzeMessage, _request_id, ("request_id", "queue")
)
HOOK: TopicSpec = TopicSpec(
    "stovepipe.hook",
    topics_pb2.HookEvent,
    _event_request_id,
    ("id", "data.request_id", "data.queue"),
    EVENT_FETCH_WAIT_MS,
)

PIPELINE_TOPICS: tuple[TopicSpec, ...] = (PROCESS, BUILD, BUILDSIGNAL, RECORD, ANALYZE, HOOK)
"""Every pipeline topic; which stage consumes each is the stage registry's business."""


def dlq(name: str) -> str:
    """The dead-letter topic of a logical topic."""
    return f"{name}{DLQ_SUFFIX}"


def poison(name: str) -> str:
    """Where undecodable dead letters of a logical topic are parked."""
    return f"{name}{POISON_SUFFIX}"


def _dead_letters_of(topic: TopicSpec) -> TopicSpec:
    return TopicSpec(
        dlq(topic.name), topic.payload, topic.key, topic.required, BACKGROUND_FETCH_WAIT_MS
    )


BY_NAME: dict[str, TopicSpec] = {
    t.name: t for t in (*PIPELINE_TOPICS, *(_dead_letters_of(t) for t in PIPELINE_TOPICS))
}


def spec(name: str) -> TopicSpec:
    """The binding of a logical topic name; ``ValueError`` for a name nobody declared."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown topic {name!r}; known: {', '.join(BY_NAME)}") from None
