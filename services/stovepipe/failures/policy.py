"""What happens to a delivery whose handler failed: retry later, dead-letter, park or redeliver.

:func:`~stovepipe.failures.classify.classify` says whether an error is worth
retrying at all; this module adds what the consuming stage allows (its
:class:`RetryPolicy`, from ``workers.<stage>``) and the attempt number, and
returns one :class:`Decision`. The messaging side carries the decision out
(``runtime.stage_messaging``); stages only raise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stovepipe.failures.classify import Verdict, classify, short_reason
from stovepipe.messaging.codec import MalformedMessage


class OnFailure(enum.Enum):
    """How a stage's input topics treat a failed delivery."""

    RETRY_THEN_DEAD_LETTER = "retry_then_dead_letter"
    """Pipeline stages: a retryable error comes back through a delay tier with
    ``attempt + 1`` until the policy's ``max_attempts``; everything else, and an
    exhausted retry, goes to ``<topic>.dlq`` where the reconciler fails it closed."""
    PARK_UNREADABLE = "park_unreadable"
    """Dead-letter consumers: a dead letter is never dropped, so an unreadable one
    is parked on ``<source>.dlq.poison`` for an operator and any other error is
    redelivered in place."""


class Action(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    PARK = "park"
    REDELIVER = "redeliver"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, bounded in attempts and in delay."""

    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float

    def backoff(self, attempt: int) -> float:
        """The delay before attempt ``attempt + 1``: doubling from the initial delay."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(attempt - 1, 0))


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    delay_s: float = 0.0


def decide(
    exc: BaseException, attempt: int, on_failure: OnFailure, retry: RetryPolicy | None
) -> Decision:
    """The one decision for a failed delivery of attempt number ``attempt``.

    A malformed payload is never retried (the same bytes cannot decode later); a
    topic with no retry policy dead-letters at once rather than loop.
    """
    reason = short_reason(exc)
    unreadable = isinstance(exc, MalformedMessage)
    if on_failure is OnFailure.PARK_UNREADABLE:
        return Decision(Action.PARK if unreadable else Action.REDELIVER, reason)
    retryable = not unreadable and classify(exc) is Verdict.RETRYABLE
    if retryable and retry is not None and attempt < retry.max_attempts:
        return Decision(Action.RETRY, reason, retry.backoff(attempt))
    return Decision(Action.DEAD_LETTER, reason)
