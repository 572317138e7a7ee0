from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stovepipe.domain import FactOrigin, InvalidInput, ValidationFact


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
