"""The whole-repository degree of a Queue with projects: the weighted share of broken ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stovepipe.config import ProjectConfig
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.stages.project_ops import whole_repo_degree

WEB = ProjectConfig(name="web", targets=("web-*",), weight=1)
API = ProjectConfig(name="api", targets=("api-*",), weight=2)
LIB = ProjectConfig(name="lib", targets=("lib-*",), weight=1)
PROJECTS = (WEB, API, LIB)


def fact(project: str, degree: float, origin: FactOrigin = FactOrigin.BUILD) -> ValidationFact:
    return ValidationFact(
        queue="mono/main",
        uri="git:a",
        project=project,
        degree=degree,
        request_id="request/mono/main/1",
        origin=origin,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_all_green_is_zero_and_all_broken_is_one() -> None:
    green = [fact(p.name, 0.0) for p in PROJECTS]
    broken = [fact(p.name, 1.0) for p in PROJECTS]
    assert whole_repo_degree(PROJECTS, green)[:2] == (0.0, FactOrigin.BUILD)
    assert whole_repo_degree(PROJECTS, broken)[0] == 1.0


def test_only_api_broken_is_its_weight_share() -> None:
    facts = [fact("web", 0.0, FactOrigin.INHERITED), fact("api", 1.0), fact("lib", 0.0)]
    degree, origin, reason = whole_repo_degree(PROJECTS, facts)
    assert degree == pytest.approx(2 / 4)
    assert origin is FactOrigin.BUILD and reason == "broken projects: api"


def test_a_fail_closed_project_makes_the_whole_verdict_fail_closed() -> None:
    facts = [fact("web", 1.0, FactOrigin.FAIL_CLOSED), fact("api", 0.0), fact("lib", 0.0)]
    degree, origin, _ = whole_repo_degree(PROJECTS, facts)
    assert degree == pytest.approx(1 / 4) and origin is FactOrigin.FAIL_CLOSED


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=3, max_size=3))
def test_the_degree_is_in_the_unit_interval_and_zero_only_when_all_are_green(
    degrees: list[float],
) -> None:
    facts = [fact(p.name, d) for p, d in zip(PROJECTS, degrees, strict=True)]
    degree = whole_repo_degree(PROJECTS, facts)[0]
    assert 0.0 <= degree <= 1.0
    assert (degree == 0.0) == all(d == 0.0 for d in degrees)
