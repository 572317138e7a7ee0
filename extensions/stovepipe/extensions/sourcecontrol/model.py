"""The values the SourceControl contract speaks in, independent of protobuf.

URIs stay plain strings everywhere: only the server that minted one may look
inside it, so core stores them, compares them for equality and hands them back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class QueueSource:
    """The part of a Queue's configuration SourceControl needs.

    ``repository`` is an absolute local path or a remote URL; ``ref`` is the
    branch the Queue follows (``main`` or ``refs/heads/main``).
    """

    queue: str
    repository: str
    ref: str


class Ancestry(enum.StrEnum):
    """The answer to "is A an ancestor of B?"; a commit is its own ancestor."""

    ANCESTOR = "ancestor"
    NOT_ANCESTOR = "not_ancestor"
    UNKNOWN = "unknown"
    """The extension could not tell, for example because a commit is gone."""


@dataclass(frozen=True)
class CommitInfo:
    """The human facts of one commit.

    ``time`` is the commit time, timezone-aware UTC; ``revision`` is the
    VCS-native name a runner checks out (for git, the full hash).
    """

    time: datetime
    author: str
    title: str
    short_name: str
    revision: str


@dataclass(frozen=True)
class PromoteResult:
    """What a promotion did.

    ``previous_uri`` is where the promotion ref pointed before the call
    (empty when it did not exist); ``moved`` is false when the ref already
    pointed at the commit or at a descendant of it.
    """

    previous_uri: str
    moved: bool
