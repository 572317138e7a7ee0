"""How ``stovepipe history`` words a verdict: the origin wherever the verdict is not a
plain green build, and a partial degree (some projects broken) as its number, so an
inherited green or a half-broken monorepo commit reads differently from a built one."""

from __future__ import annotations

import pytest

from stovepipe.cli.client_commands import _verdict_text
from stovepipe.v1 import types_pb2


@pytest.mark.parametrize(
    ("degree", "origin", "text"),
    [
        (0.0, types_pb2.FACT_ORIGIN_BUILD, "green"),
        (0.0, types_pb2.FACT_ORIGIN_INHERITED, "green (inherited)"),
        (1.0, types_pb2.FACT_ORIGIN_BUILD, "broken (build)"),
        (1.0, types_pb2.FACT_ORIGIN_FAIL_CLOSED, "broken (fail_closed)"),
        (0.5, types_pb2.FACT_ORIGIN_BUILD, "broken 0.5 (build)"),
        (0.25, types_pb2.FACT_ORIGIN_FAIL_CLOSED, "broken 0.25 (fail_closed)"),
    ],
)
def test_a_verdict_names_its_origin_and_partial_degree(
    degree: float, origin: types_pb2.FactOrigin.ValueType, text: str
) -> None:
    assert _verdict_text(types_pb2.ValidationFact(degree=degree, origin=origin)) == text
