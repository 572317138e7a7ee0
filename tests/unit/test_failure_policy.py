"""The retry-or-dead-letter decision, apart from any broker."""

from __future__ import annotations

import pytest

from stovepipe.delays import DEFAULT_TIERS_S, choose_tier
from stovepipe.domain import InvalidInput
from stovepipe.failures import Action, NonRetryable, OnFailure, Retryable, RetryPolicy, decide
from stovepipe.messaging import MalformedMessage

POLICY = RetryPolicy(max_attempts=4, backoff_initial_s=1.0, backoff_max_s=5.0)
RETRY = OnFailure.RETRY_THEN_DEAD_LETTER


def test_retryable_errors_come_back_with_doubling_bounded_backoff_until_the_last_attempt() -> None:
    delays = [decide(Retryable("x"), attempt, RETRY, POLICY) for attempt in (1, 2, 3)]
    assert [d.action for d in delays] == [Action.RETRY] * 3
    assert [d.delay_s for d in delays] == [1.0, 2.0, 4.0]
    assert decide(Retryable("x"), 4, RETRY, POLICY).action is Action.DEAD_LETTER
    assert RetryPolicy(10, 1.0, 5.0).backoff(9) == 5.0


@pytest.mark.parametrize(
    "error", [NonRetryable("no"), InvalidInput("bad"), MalformedMessage("garbage")]
)
def test_permanent_errors_are_dead_lettered_at_once(error: Exception) -> None:
    decision = decide(error, 1, RETRY, POLICY)
    assert decision.action is Action.DEAD_LETTER
    assert type(error).__name__ in decision.reason


def test_without_a_policy_nothing_is_retried() -> None:
    assert decide(Retryable("x"), 1, RETRY, None).action is Action.DEAD_LETTER


def test_dead_letters_are_parked_when_unreadable_and_otherwise_redelivered() -> None:
    park = OnFailure.PARK_UNREADABLE
    assert decide(MalformedMessage("junk"), 1, park, None).action is Action.PARK
    assert decide(Retryable("db down"), 9, park, None).action is Action.REDELIVER
    assert decide(NonRetryable("odd"), 1, park, None).action is Action.REDELIVER


def test_a_reason_is_redacted_and_short() -> None:
    reason = decide(Retryable("postgresql://u:hunter2@db/x " + "y" * 1000), 1, RETRY, POLICY).reason
    assert "hunter2" not in reason and len(reason) <= 300


def test_every_allowed_backoff_finds_a_tier_that_is_not_early() -> None:
    for delay in (0.01, 0.2, 0.5, 1.0, 3.0, 5.0, 29.0, 30.0, 119.0, max(DEFAULT_TIERS_S)):
        assert choose_tier(delay) >= delay
