"""Which commit a caller means: an opaque commit URI, or a plain SHA a deploy job has.

A deploy job knows ``git rev-parse HEAD``, not the URI SourceControl minted for
the commit, so every query that names a commit also takes a SHA: the full
object name or a prefix of at least ``MIN_SHA_PREFIX`` hex digits. A SHA is
looked up among the URIs the Queue has ingested (the commit part of a URI is
what follows its last ``@``, the form both reference SourceControls mint); a
SHA no ingested commit has is "not recorded", like a URI that was never seen.
A prefix that fits more than one ingested commit is refused with how many it
fits, never guessed. The lookup is bounded: it reads at most
``MAX_CANDIDATES`` rows.

Anything that is not hex and has neither ``@`` nor ``:`` is neither a URI nor
a SHA (for example a branch name) and is refused instead of answered "not
recorded", which would read like a real answer.
"""

from __future__ import annotations

import re

from stovepipe.domain import InvalidInput
from stovepipe.storage import Store

MIN_SHA_PREFIX = 7
MAX_SHA_LENGTH = 64
MAX_CANDIDATES = 10
_HEX = re.compile(r"[0-9a-fA-F]+")


def is_sha(value: str) -> bool:
    """True when ``value`` is meant as a commit SHA (all hex digits, none of a URI's marks)."""
    return bool(_HEX.fullmatch(value))


async def resolve_commit(store: Store, queue: str, value: str, *, field: str = "uri") -> str:
    """The commit URI ``value`` names in ``queue``; ``""`` for a SHA the Queue never ingested.

    ``InvalidInput`` for an empty value, a SHA prefix that is too short, too
    long or ambiguous, and a value that is neither a URI nor a SHA.
    """
    if not value:
        raise InvalidInput(f"{field} is empty; pass a commit URI or a commit SHA")
    if not is_sha(value):
        if "@" not in value and ":" not in value:
            raise InvalidInput(
                f"{field} is neither a commit URI (as printed by ingest, status or last-green) "
                f"nor a commit SHA of at least {MIN_SHA_PREFIX} hex digits"
            )
        return value
    if len(value) < MIN_SHA_PREFIX:
        raise InvalidInput(
            f"{field}: a commit SHA prefix needs at least {MIN_SHA_PREFIX} hex digits, "
            f"got {len(value)}"
        )
    if len(value) > MAX_SHA_LENGTH:
        raise InvalidInput(
            f"{field}: a commit SHA has at most {MAX_SHA_LENGTH} hex digits, got {len(value)}"
        )
    candidates = await store.find_commit_uris(queue, value.lower(), limit=MAX_CANDIDATES + 1)
    if len(candidates) > 1:
        many = (
            f"more than {MAX_CANDIDATES}" if len(candidates) > MAX_CANDIDATES else len(candidates)
        )
        raise InvalidInput(
            f"{field}: the SHA prefix {value.lower()} is ambiguous in queue {queue}: it matches "
            f"{many} ingested commits; give more digits"
        )
    return candidates[0] if candidates else ""
