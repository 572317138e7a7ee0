"""Protobuf (de)serialisation with one error for everything that is not a valid payload."""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from stovepipe.messaging.topics import TopicSpec

DEFAULT_MAX_BYTES = 1024 * 1024


class MalformedMessage(ValueError):
    """Bytes on a topic that are not the topic's payload (garbage, wrong type, oversize)."""


def encode(topic: TopicSpec, message: Message, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    if not isinstance(message, topic.payload):
        raise TypeError(
            f"{topic.name} carries {topic.payload.__name__}, not {type(message).__name__}"
        )
    data = message.SerializeToString(deterministic=True)
    if len(data) > max_bytes:
        raise MalformedMessage(f"{topic.name}: payload of {len(data)} bytes exceeds {max_bytes}")
    return data


def decode(topic: TopicSpec, data: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    if data is None:
        raise MalformedMessage(f"{topic.name}: empty record")
    if len(data) > max_bytes:
        raise MalformedMessage(f"{topic.name}: payload of {len(data)} bytes exceeds {max_bytes}")
    message = topic.payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise MalformedMessage(f"{topic.name}: not a {topic.payload.__name__}: {exc}") from None
    required = [
        f.name for f in message.DESCRIPTOR.fields if f.name in ("request_id", "queue", "build_id")
    ]
    missing = [name for name in required if not getattr(message, name)]
    if missing:
        raise MalformedMessage(f"{topic.name}: {topic.payload.__name__} lacks {', '.join(missing)}")
    return message
