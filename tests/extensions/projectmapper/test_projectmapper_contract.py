"""The ProjectMapper contract: what every implementation answers for the same input."""

from __future__ import annotations

import grpc
import pytest

from stovepipe.extensions.projectmapper import (
    MapInput,
    ProjectMapper,
    ProjectSpec,
    ProjectVerdict,
    TargetResult,
)
from stovepipe.extensions.projectmapper.errors import InvalidMapInput

WEB = ProjectSpec(name="web", paths=("web/**",), target_patterns=("web-*",), weight=1)
API = ProjectSpec(name="api", paths=("api/**",), target_patterns=("api-*", "lib-*"), weight=2)
LIB = ProjectSpec(name="lib", paths=("lib/**",), target_patterns=("lib-*",), weight=1)
PROJECTS = (WEB, API, LIB)


def _graph(**states: str) -> tuple[TargetResult, ...]:
    return tuple(TargetResult(name=name.replace("_", "-"), state=s) for name, s in states.items())


async def _map(
    mapper: ProjectMapper, targets: tuple[TargetResult, ...], changed: tuple[str, ...] = ()
) -> dict[str, tuple[ProjectVerdict, bool, tuple[str, ...]]]:
    impacts = await mapper.map(
        MapInput(queue="mono/main", targets=targets, changed_files=changed, projects=PROJECTS)
    )
    assert [i.project for i in impacts] == ["web", "api", "lib"]
    return {i.project: (i.verdict, i.affected, i.targets) for i in impacts}


async def test_a_full_green_build_answers_green_for_every_project(mapper: ProjectMapper) -> None:
    result = await _map(
        mapper, _graph(web_test="succeeded", api_test="succeeded", lib_test="succeeded")
    )
    assert {p: v for p, (v, _, _) in result.items()} == dict.fromkeys(
        ("web", "api", "lib"), ProjectVerdict.GREEN
    )
    assert result["api"][2] == ("api-test", "lib-test")


async def test_a_failed_target_breaks_every_project_that_owns_it(mapper: ProjectMapper) -> None:
    result = await _map(
        mapper, _graph(web_test="succeeded", api_test="succeeded", lib_test="failed")
    )
    assert result["web"][0] is ProjectVerdict.GREEN
    assert result["api"][0] is ProjectVerdict.BROKEN
    assert result["lib"][0] is ProjectVerdict.BROKEN


@pytest.mark.parametrize("state", ["failed", "timed_out"])
async def test_every_failing_state_is_broken(mapper: ProjectMapper, state: str) -> None:
    result = await _map(mapper, _graph(web_test=state, api_test="skipped", lib_test="skipped"))
    assert result["web"][0] is ProjectVerdict.BROKEN


async def test_a_cancelled_target_says_nothing_about_the_code(mapper: ProjectMapper) -> None:
    result = await _map(
        mapper, _graph(web_test="cancelled", api_test="succeeded", lib_test="succeeded")
    )
    assert result["web"][0] is ProjectVerdict.NOT_YET_KNOWN
    assert result["api"][0] is ProjectVerdict.GREEN


async def test_a_project_none_of_whose_targets_ran_is_not_yet_known(
    mapper: ProjectMapper,
) -> None:
    result = await _map(
        mapper,
        _graph(web_test="skipped", api_test="succeeded", lib_test="skipped"),
        changed=("api/server.py",),
    )
    assert result["web"][:2] == (ProjectVerdict.NOT_YET_KNOWN, False)
    assert result["lib"][:2] == (ProjectVerdict.NOT_YET_KNOWN, False)
    # api-test ran and passed, lib-test was skipped as unchanged: api is answered.
    assert result["api"][:2] == (ProjectVerdict.GREEN, True)


async def test_targets_that_never_finished_never_make_a_project_green(
    mapper: ProjectMapper,
) -> None:
    result = await _map(
        mapper, _graph(web_test="pending", api_test="succeeded", lib_test="running")
    )
    assert result["web"][0] is ProjectVerdict.NOT_YET_KNOWN
    assert result["api"][0] is ProjectVerdict.NOT_YET_KNOWN


async def test_no_build_means_nothing_is_known(mapper: ProjectMapper) -> None:
    result = await _map(mapper, (), changed=("web/index.html",))
    assert result["web"] == (ProjectVerdict.NOT_YET_KNOWN, True, ())
    assert result["api"] == (ProjectVerdict.NOT_YET_KNOWN, False, ())


async def test_a_changed_file_under_the_paths_affects_the_project(mapper: ProjectMapper) -> None:
    result = await _map(
        mapper,
        _graph(web_test="skipped", api_test="skipped", lib_test="skipped"),
        changed=("web/README", "docs/x.md"),
    )
    assert [p for p, (_, affected, _) in result.items() if affected] == ["web"]


async def test_repeated_project_names_are_invalid(mapper: ProjectMapper) -> None:
    request = MapInput(queue="mono/main", targets=(), changed_files=(), projects=(WEB, WEB))
    with pytest.raises((InvalidMapInput, grpc.aio.AioRpcError)) as raised:
        await mapper.map(request)
    if isinstance(raised.value, grpc.aio.AioRpcError):
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_project_without_target_patterns_is_invalid(mapper: ProjectMapper) -> None:
    bare = ProjectSpec(name="bare", paths=("x/**",))
    request = MapInput(queue="mono/main", targets=(), changed_files=(), projects=(bare,))
    with pytest.raises((InvalidMapInput, grpc.aio.AioRpcError)) as raised:
        await mapper.map(request)
    if isinstance(raised.value, grpc.aio.AioRpcError):
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "bare" in (raised.value.details() or "")
