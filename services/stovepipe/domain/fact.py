"""Validation facts: the immutable greenness verdict of one commit for one scope."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from stovepipe.domain.errors import InvalidInput

WHOLE_REPO = ""
"""The project name of a fact about the whole repository."""

GREEN = 0.0
BROKEN = 1.0


class FactOrigin(enum.StrEnum):
    BUILD = "build"
    FAIL_CLOSED = "fail_closed"


@dataclass(frozen=True, slots=True)
class ValidationFact:
    """``(queue, uri, project) -> degree``; first writer wins, never overwritten.

    ``degree`` is 0 for green and 1 for fully broken. Absence of a fact is not green.
    """

    queue: str
    uri: str
    project: str
    degree: float
    request_id: str
    origin: FactOrigin
    created_at: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.degree, int | float) or math.isnan(self.degree):
            raise InvalidInput(f"degree must be a number in [0, 1], got {self.degree!r}")
        if not 0.0 <= self.degree <= 1.0:
            raise InvalidInput(f"degree must be in [0, 1], got {self.degree}")
        if not self.uri:
            raise InvalidInput("a fact needs a commit URI")

    @property
    def green(self) -> bool:
        return self.degree == GREEN
