"""Kafka messaging: topics bound to protobuf payloads, publish, subscribe, commit after success.

Exceptions::

    ValueError
    ├── MalformedMessage      garbage, wrong payload type, oversize, missing ids, empty key
    └── KafkaSecurityError    a CA, client certificate or key file is missing or unusable
    RuntimeError
    └── TopicCreationFailed   the cluster refused to create a topic
"""

from stovepipe.messaging.admin import TopicCreationFailed, ensure_topics, topic_partitions
from stovepipe.messaging.broker import kafka_broker
from stovepipe.messaging.bus import Bus, PayloadHandler
from stovepipe.messaging.codec import MalformedMessage, decode, encode, payload_type_name
from stovepipe.messaging.consumer import Consumer, DeliveryHandler, Subscription
from stovepipe.messaging.delivery import Delivery, current_delivery
from stovepipe.messaging.failure import FailurePolicy, Outcome, redeliver
from stovepipe.messaging.publisher import Published, Publisher
from stovepipe.messaging.settings import KafkaSecurity, KafkaSecurityError, KafkaSettings
from stovepipe.messaging.topics import (
    ANALYZE,
    BUILD,
    BUILDSIGNAL,
    HOOK,
    PIPELINE_TOPICS,
    PROCESS,
    RECORD,
    TopicSpec,
    dlq,
    poison,
    spec,
)

__all__ = [
    "ANALYZE",
    "BUILD",
    "BUILDSIGNAL",
    "HOOK",
    "PIPELINE_TOPICS",
    "PROCESS",
    "RECORD",
    "Bus",
    "Consumer",
    "Delivery",
    "DeliveryHandler",
    "FailurePolicy",
    "KafkaSecurity",
    "KafkaSecurityError",
    "KafkaSettings",
    "MalformedMessage",
    "Outcome",
    "PayloadHandler",
    "Published",
    "Publisher",
    "Subscription",
    "TopicCreationFailed",
    "TopicSpec",
    "current_delivery",
    "decode",
    "dlq",
    "encode",
    "ensure_topics",
    "kafka_broker",
    "payload_type_name",
    "poison",
    "redeliver",
    "spec",
    "topic_partitions",
]
