"""Kafka messaging: topics bound to payload types, codec, headers and the Bus."""

from stovepipe.messaging.bus import (
    Bus,
    Delivery,
    FailurePolicy,
    Outcome,
    ensure_topics,
    redeliver,
)
from stovepipe.messaging.codec import MalformedMessage, decode, encode
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import PIPELINE_TOPICS, TopicSpec, dlq, poison, spec

__all__ = [
    "PIPELINE_TOPICS",
    "Bus",
    "Delivery",
    "FailurePolicy",
    "KafkaSettings",
    "MalformedMessage",
    "Outcome",
    "TopicSpec",
    "decode",
    "dlq",
    "encode",
    "ensure_topics",
    "poison",
    "redeliver",
    "spec",
]
