"""Validation facts: the immutable greenness verdict of one commit for one scope."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.trigger import UpstreamGreen

WHOLE_REPO = ""
"""The project name of a fact about the whole repository."""

GREEN = 0.0
BROKEN = 1.0


class FactOrigin(enum.StrEnum):
    BUILD = "build"
    FAIL_CLOSED = "fail_closed"
    INHERITED = "inherited"
    """A project unaffected since its own last green commit carries that verdict."""


@dataclass(frozen=True, slots=True)
class ValidationFact:
    """``(queue, uri, project, attempt) -> degree``; written once, never overwritten.

    ``degree`` is 0 for green and 1 for fully broken. Absence of a fact is not green.
    A commit normally has one fact per scope. A re-validation adds the fact of
    its new attempt next to the old ones instead of replacing them, and
    :func:`authoritative` says which of them answers "is this commit green?".
    """

    queue: str
    uri: str
    project: str
    degree: float
    request_id: str
    origin: FactOrigin
    created_at: datetime
    reason: str = ""
    attempt: int = 1
    upstream_greens: tuple[UpstreamGreen, ...] = ()
    """The upstream green commits the Request was built against (version propagation)."""
    inherited_from_uri: str = ""
    """For ``origin = inherited``: the commit whose verdict this fact carries forward."""

    def __post_init__(self) -> None:
        if not isinstance(self.degree, int | float) or math.isnan(self.degree):
            raise InvalidInput(f"degree must be a number in [0, 1], got {self.degree!r}")
        if not 0.0 <= self.degree <= 1.0:
            raise InvalidInput(f"degree must be in [0, 1], got {self.degree}")
        if not self.uri:
            raise InvalidInput("a fact needs a commit URI")
        if self.attempt < 1:
            raise InvalidInput(f"attempt must be >= 1, got {self.attempt}")

    @property
    def green(self) -> bool:
        return self.degree == GREEN


def outranks(candidate: ValidationFact, incumbent: ValidationFact) -> bool:
    """True when ``candidate`` is the better answer for the same commit and scope.

    Green is final: the earliest green attempt wins and nothing displaces it
    (a gate may already have deployed on it). Among non-green facts a real
    verdict from a build beats a ``fail_closed`` one, because fail-closed says
    "we could not find out", not "it is broken"; within the same origin the
    later attempt wins, being the newer evidence. Storage mirrors this rule in
    SQL (``stovepipe.storage.store``); tests hold the two together.
    """
    if candidate.green != incumbent.green:
        return candidate.green
    if candidate.green:
        return candidate.attempt < incumbent.attempt
    if candidate.origin != incumbent.origin:
        return candidate.origin is FactOrigin.BUILD
    return candidate.attempt > incumbent.attempt


def authoritative(facts: Iterable[ValidationFact]) -> ValidationFact | None:
    """The fact that answers for a commit and scope among its attempts, or None."""
    best: ValidationFact | None = None
    for fact in facts:
        if best is None or outranks(fact, best):
            best = fact
    return best
