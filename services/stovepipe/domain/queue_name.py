"""Queue names: stable logical names such as ``monorepo/main``.

A Queue name is embedded in Request ids, topic keys and primary keys, so it is
kept to a small, URL- and path-safe alphabet.
"""

from __future__ import annotations

import re

from stovepipe.domain.errors import InvalidQueueName

MAX_QUEUE_NAME_LENGTH = 128
# Matched with ``fullmatch``: ``$`` would also accept a name with a trailing newline.
_SEGMENT = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_ALLOWED = re.compile(r"[a-z0-9._/-]+")


def validate_queue_name(name: str) -> str:
    """Return ``name`` when it is a valid Queue name, else raise ``InvalidQueueName``.

    Rules: 1 to 128 characters; lower-case letters, digits, ``.``, ``_``, ``-``
    and ``/``; ``/`` separates non-empty segments that start and end with a
    letter or digit (so ``monorepo/main`` is valid, ``/main`` and ``a//b`` are not).
    """
    if not isinstance(name, str) or not name:
        raise InvalidQueueName("queue name is empty; expected something like 'monorepo/main'")
    if len(name) > MAX_QUEUE_NAME_LENGTH:
        raise InvalidQueueName(
            f"queue name is {len(name)} characters long; the limit is {MAX_QUEUE_NAME_LENGTH}"
        )
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidQueueName(
            f"queue name {name!r} contains {shown}; allowed are lower-case letters, digits, "
            "'.', '_', '-' and '/'"
        )
    for segment in name.split("/"):
        if not segment:
            raise InvalidQueueName(
                f"queue name {name!r} has an empty segment; '/' must separate non-empty parts"
            )
        if not _SEGMENT.fullmatch(segment):
            raise InvalidQueueName(
                f"queue name {name!r}: segment {segment!r} must start and end "
                "with a letter or digit"
            )
    return name
