"""What a handler (and the failure policy) learns about the record it is handling."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stovepipe.messaging import headers as hdr


@dataclass(frozen=True)
class Delivery:
    """One consumed record: where it came from, its key, headers and raw value.

    ``topic`` is the physical name (with the prefix). ``value`` is kept so a
    failure policy can forward the original bytes unchanged (to a delay tier or
    a dead-letter topic).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Mapping[str, str]
    value: bytes = field(repr=False)

    @property
    def attempt(self) -> int:
        """``1`` on first delivery; a retry published with ``attempt=n`` says ``n``."""
        return hdr.attempt_of(self.headers)

    @property
    def failure_reason(self) -> str | None:
        """Why the previous attempt failed, when a retry says so."""
        return self.headers.get(hdr.FAILURE_REASON)

    @classmethod
    def from_record(cls, record: Any) -> Delivery:
        """From an aiokafka ``ConsumerRecord``."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            headers=hdr.from_record(record.headers),
            value=record.value or b"",
        )


current_delivery: contextvars.ContextVar[Delivery] = contextvars.ContextVar("current_delivery")
"""The record being handled, for code below a handler that was given only the payload."""
