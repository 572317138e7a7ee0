"""Kafka messaging: topics bound to payload types, codec, headers and the Bus."""

from stovepipe.messaging.bus import (
    Bus,
    Delivery,
    FailurePolicy,
    Outcome,
    current_delivery,
    ensure_topics,
    redeliver,
)
from stovepipe.messaging.codec import MalformedMessage, decode, encode
from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import (
    DEAD_LETTER_TOPICS,
    PIPELINE_TOPICS,
    TopicSpec,
    dlq,
    poison,
    spec,
)

__all__ = [
    "DEAD_LETTER_TOPICS",
    "PIPELINE_TOPICS",
    "Bus",
    "Delivery",
    "FailurePolicy",
    "KafkaSettings",
    "MalformedMessage",
    "Outcome",
    "TopicSpec",
    "current_delivery",
    "decode",
    "dlq",
    "encode",
    "ensure_topics",
    "poison",
    "redeliver",
    "spec",
]
