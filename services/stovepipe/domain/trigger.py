"""Why a Request exists: the trigger that reported its head, and what it was built against.

A trigger is a kind plus a few string details. The built-in kinds are the ones
Stovepipe itself produces; an API caller may still name its own (a home-made
poller saying ``nightly-bot``), so the kind stays a string on the wire and in
storage, bounded in length, and only these five have a meaning the code relies on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stovepipe.domain.errors import InvalidInput

MAX_TRIGGER_LENGTH = 64
MAX_DETAILS = 8
MAX_DETAIL_KEY = 32
MAX_DETAIL_VALUE = 1024

TriggerDetails = tuple[tuple[str, str], ...]
"""Sorted ``(key, value)`` pairs: hashable, and stored and compared in one order."""


class TriggerKind(enum.StrEnum):
    MANUAL = "manual"
    """A person or a script ran ``stovepipe ingest`` (or called Ingest)."""
    POLL = "poll"
    """The built-in poller, on an ``every:`` interval (or at its start-up)."""
    SCHEDULE = "schedule"
    """The built-in poller, on a cron ``schedule:``."""
    PUSH = "push"
    """A push webhook from the code host."""
    UPSTREAM = "upstream"
    """A Queue this one ``depends_on`` recorded a new green commit."""


# Detail keys the built-in triggers write.
UPSTREAM_QUEUE = "upstream_queue"
UPSTREAM_URI = "upstream_uri"
UPSTREAM_REQUEST = "upstream_request_id"
PUSH_HOST = "host"
PUSH_DELIVERY = "delivery"
PUSH_SHA_HINT = "sha_hint"


def trigger_details(
    details: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> TriggerDetails:
    """``details`` as sorted pairs, bounded; ``InvalidInput`` when a bound is exceeded."""
    pairs = dict(details or {})
    if len(pairs) > MAX_DETAILS:
        raise InvalidInput(f"at most {MAX_DETAILS} trigger details, got {len(pairs)}")
    for key, value in pairs.items():
        if not key or len(key) > MAX_DETAIL_KEY:
            raise InvalidInput(f"a trigger detail key must have 1 to {MAX_DETAIL_KEY} characters")
        if len(value) > MAX_DETAIL_VALUE:
            raise InvalidInput(
                f"trigger detail {key!r} is longer than {MAX_DETAIL_VALUE} characters"
            )
    return tuple(sorted(pairs.items()))


@dataclass(frozen=True, slots=True)
class UpstreamGreen:
    """The green commit of an upstream Queue that a dependent Request was built against."""

    queue: str
    uri: str
    request_id: str

    def as_json(self) -> dict[str, str]:
        return {"queue": self.queue, "uri": self.uri, "request_id": self.request_id}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> UpstreamGreen:
        return cls(
            queue=str(data["queue"]), uri=str(data["uri"]), request_id=str(data["request_id"])
        )
