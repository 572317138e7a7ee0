"""Topics: each bound to exactly one payload type and one partition-key rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from stovepipe.v1 import topics_pb2


@dataclass(frozen=True)
class TopicSpec:
    name: str
    payload: type[Message]
    key: Callable[[Any], str]


PROCESS = TopicSpec("stovepipe.process", topics_pb2.ProcessMessage, lambda m: m.queue)
BUILD = TopicSpec("stovepipe.build", topics_pb2.BuildMessage, lambda m: m.request_id)
BUILDSIGNAL = TopicSpec(
    "stovepipe.buildsignal", topics_pb2.BuildSignalMessage, lambda m: m.build_id
)
RECORD = TopicSpec("stovepipe.record", topics_pb2.RecordMessage, lambda m: m.request_id)
ANALYZE = TopicSpec("stovepipe.analyze", topics_pb2.AnalyzeMessage, lambda m: m.request_id)
HOOK = TopicSpec("stovepipe.hook", topics_pb2.HookEvent, lambda m: m.data.request_id)

PIPELINE_TOPICS: tuple[TopicSpec, ...] = (PROCESS, BUILD, BUILDSIGNAL, RECORD, ANALYZE, HOOK)
STAGE_TOPICS: tuple[TopicSpec, ...] = (PROCESS, BUILD, BUILDSIGNAL, RECORD)
DEAD_LETTER_TOPICS: tuple[TopicSpec, ...] = tuple(
    TopicSpec(f"{t.name}.dlq", t.payload, t.key) for t in STAGE_TOPICS
)
"""A stage's dead letters keep the stage's payload type, so they decode the same way."""
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in (*PIPELINE_TOPICS, *DEAD_LETTER_TOPICS)}


def spec(name: str) -> TopicSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown topic {name!r}; known: {', '.join(BY_NAME)}") from None


def dlq(name: str) -> str:
    return f"{name}.dlq"


def poison(name: str) -> str:
    return f"{name}.dlq.poison"
