"""Kept output of failed targets: what a person reads to see why a commit is red.

The runner's own logs live in its work directory and go when it prunes or is
replaced; these rows are core's copy, taken once per Request attempt when its
build fails, masked through :mod:`stovepipe.redaction` and cut to the last
``MAX_LOG_CHARS`` characters, and kept for ``storage.build_log_retention_days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stovepipe.redaction import redact

MAX_LOG_CHARS = 64 * 1024
"""Per target and attempt: the end of a log is where a failure explains itself."""


@dataclass(frozen=True, slots=True)
class BuildLog:
    queue: str
    request_id: str
    attempt: int
    target: str
    build_id: str
    content: str
    truncated: bool
    created_at: datetime


def bounded(content: str, truncated: bool) -> tuple[str, bool]:
    """``content`` redacted and cut to its last ``MAX_LOG_CHARS`` characters (from a line
    start, so no line is shown half-masked); ``truncated`` when anything was dropped."""
    if len(content) > MAX_LOG_CHARS:
        tail = content[-MAX_LOG_CHARS:]
        newline = tail.find("\n")
        content = tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail
        truncated = True
    return redact(content), truncated
