from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stovepipe.domain import FactOrigin, InvalidInput, ValidationFact, authoritative


def _fact(degree: float) -> ValidationFact:
    return ValidationFact(
        queue="q",
        uri="u",
        project="",
        degree=degree,
        request_id="request/q/1",
        origin=FactOrigin.BUILD,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_only_degree_zero_is_green() -> None:
    assert _fact(0.0).green
    assert not _fact(0.25).green
    assert not _fact(1.0).green


@pytest.mark.parametrize("degree", [-0.1, 1.01, float("nan")])
def test_degree_outside_unit_interval_is_rejected(degree: float) -> None:
    with pytest.raises(InvalidInput, match="degree"):
        _fact(degree)


def _attempt(attempt: int, *, green: bool, origin: FactOrigin = FactOrigin.BUILD) -> ValidationFact:
    return ValidationFact(
        queue="q",
        uri="u",
        project="",
        degree=0.0 if green else 1.0,
        request_id="request/q/1",
        origin=origin,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        attempt=attempt,
    )


FAIL_CLOSED = FactOrigin.FAIL_CLOSED


@pytest.mark.parametrize(
    ("history", "winner"),
    [
        # a real verdict displaces fail_closed, whichever way it went
        ([_attempt(1, green=False, origin=FAIL_CLOSED), _attempt(2, green=True)], 2),
        ([_attempt(1, green=False, origin=FAIL_CLOSED), _attempt(2, green=False)], 2),
        # fail_closed never displaces a real verdict
        ([_attempt(1, green=False), _attempt(2, green=False, origin=FAIL_CLOSED)], 1),
        # a suspected flake that passes: the green attempt answers
        ([_attempt(1, green=False), _attempt(2, green=True)], 2),
        # two real broken verdicts: the newer evidence answers
        ([_attempt(1, green=False), _attempt(2, green=False)], 2),
        # nothing displaces green, and the first green is the one that stands
        ([_attempt(1, green=True), _attempt(2, green=False)], 1),
        ([_attempt(1, green=True), _attempt(2, green=False, origin=FAIL_CLOSED)], 1),
        ([_attempt(2, green=True), _attempt(3, green=True)], 2),
        # among fail_closed only, the latest
        (
            [
                _attempt(1, green=False, origin=FAIL_CLOSED),
                _attempt(2, green=False, origin=FAIL_CLOSED),
            ],
            2,
        ),
    ],
)
def test_the_authoritative_fact_among_attempts(history: list[ValidationFact], winner: int) -> None:
    for ordering in (history, list(reversed(history))):
        best = authoritative(ordering)
        assert best is not None and best.attempt == winner


def test_no_attempts_means_no_fact_and_attempts_start_at_one() -> None:
    assert authoritative([]) is None
    with pytest.raises(InvalidInput, match="attempt"):
        _attempt(0, green=True)
