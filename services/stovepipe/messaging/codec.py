"""Protobuf payloads to bytes and back, with one error for everything that is not a payload.

A record is malformed when it is garbage, when it carries another topic's
payload type, when it is bigger than the configured limit, or when it lacks
the ids its topic requires. All four raise :class:`MalformedMessage`; the
failure policy treats it as permanent (retrying the same bytes cannot help).

Protobuf alone cannot always tell two message types apart (their fields may
line up), so the publisher names the type in the ``stovepipe-payload-type``
header and :func:`decode` checks it when present. Unknown fields are accepted:
a newer producer may add fields an older consumer does not know yet.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from stovepipe.messaging.topics import TopicSpec

DEFAULT_MAX_BYTES = 1024 * 1024


class MalformedMessage(ValueError):
    """Bytes (or a message) that are not a valid payload of the topic."""


def payload_type_name(message_type: type[Message]) -> str:
    """The fully qualified protobuf name, as carried in the payload-type header."""
    return str(message_type.DESCRIPTOR.full_name)


def encode(topic: TopicSpec, message: Message, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Serialise ``message`` for ``topic`` after checking its type, ids and size."""
    if not isinstance(message, topic.payload):
        raise MalformedMessage(
            f"{topic.name} carries {topic.payload.__name__}, not {type(message).__name__}"
        )
    _check_required(topic, message)
    data = message.SerializeToString(deterministic=True)
    _check_size(topic, len(data), max_bytes)
    return data


def decode(
    topic: TopicSpec,
    data: bytes | None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    declared_type: str | None = None,
) -> Any:
    """Parse ``data`` as the topic's payload; ``declared_type`` comes from the record's headers."""
    if data is None:
        raise MalformedMessage(f"{topic.name}: record without a value")
    _check_size(topic, len(data), max_bytes)
    expected = payload_type_name(topic.payload)
    if declared_type is not None and declared_type != expected:
        raise MalformedMessage(f"{topic.name} carries {expected}, the record says {declared_type}")
    message = topic.payload()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise MalformedMessage(f"{topic.name}: not a {topic.payload.__name__}: {exc}") from None
    _check_required(topic, message)
    return message


def _check_size(topic: TopicSpec, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise MalformedMessage(f"{topic.name}: payload of {size} bytes exceeds {max_bytes}")


def _check_required(topic: TopicSpec, message: Message) -> None:
    missing = [path for path in topic.required if not _field(message, path)]
    if missing:
        raise MalformedMessage(f"{topic.name}: {topic.payload.__name__} lacks {', '.join(missing)}")


def _field(message: Message, path: str) -> object:
    value: object = message
    for part in path.split("."):
        value = getattr(value, part)
    return value
