"""The no-op extensions keep the contracts core relies on, over real gRPC.

The scale-out test and the benchmarks trust them to stand in for git and a
runner; if one answered what a real server never would, they would measure or
prove the wrong thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest

from harness.noop_extensions import NoopExtensions, noop_extensions, uri_commit
from stovepipe.extensions.buildrunner import (
    BuildRunnerClient,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.sourcecontrol import Ancestry, QueueSource, SourceControlClient
from stovepipe.testing.contracts import build_runner_client, source_control_client

REPO = "/srv/noop/calc"
SOURCE = QueueSource("calc/main", REPO, "main")


@pytest.fixture
async def ext() -> AsyncIterator[NoopExtensions]:
    async with noop_extensions() as served:
        yield served


@pytest.fixture
async def sc(ext: NoopExtensions) -> AsyncIterator[SourceControlClient]:
    async with source_control_client(ext.source_control_address) as client:
        yield client


@pytest.fixture
async def runner(ext: NoopExtensions) -> AsyncIterator[BuildRunnerClient]:
    async with build_runner_client(ext.build_runner_address) as client:
        yield client


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code()


async def test_history_is_linear_and_answers_in_order(
    ext: NoopExtensions, sc: SourceControlClient
) -> None:
    history = ext.source_control.history(REPO, queue="calc/main")
    first, second, third = (history.uri(history.commit()) for _ in range(3))

    assert await sc.resolve_head(SOURCE) == third
    assert await sc.is_ancestor(SOURCE, first, third) is Ancestry.ANCESTOR
    assert await sc.is_ancestor(SOURCE, third, first) is Ancestry.NOT_ANCESTOR
    assert await sc.is_ancestor(SOURCE, second, second) is Ancestry.ANCESTOR
    assert await sc.list_commits(SOURCE, first, third) == [second, third]
    assert await sc.list_commits(SOURCE, "", third, limit=2) == [second, third]
    assert await sc.changed_files(SOURCE, first, third) == []
    described = await sc.describe_commit(SOURCE, second)
    assert described.revision == uri_commit(second)
    assert described.time < (await sc.describe_commit(SOURCE, third)).time


async def test_promote_moves_forward_only(ext: NoopExtensions, sc: SourceControlClient) -> None:
    history = ext.source_control.history(REPO)
    old, new = history.uri(history.commit()), history.uri(history.commit())

    first = await sc.promote(SOURCE, new, "verified-main")
    back = await sc.promote(SOURCE, old, "verified-main")

    assert (first.previous_uri, first.moved) == ("", True)
    assert (back.previous_uri, back.moved) == (new, False)
    assert history.ref("verified-main") == uri_commit(new)
    assert history.position(history.ref("verified-main")) == 1


async def test_what_it_does_not_know_is_refused_as_the_git_server_refuses_it(
    ext: NoopExtensions, sc: SourceControlClient
) -> None:
    history = ext.source_control.history(REPO)
    head = history.uri(history.commit())
    other = ext.source_control.history("/srv/noop/other")
    foreign = other.uri(other.commit())

    assert await code_of(sc.resolve_head(QueueSource("x/main", "/srv/none", "main"))) is (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert await code_of(sc.resolve_head(QueueSource("calc/dev", REPO, "dev"))) is (
        grpc.StatusCode.NOT_FOUND
    )
    assert await code_of(sc.is_ancestor(SOURCE, foreign, head)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert await code_of(sc.promote(SOURCE, "noop+elsewhere#main@1", "v")) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def _spec(head: str, key: str) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="calc/main", repository=REPO, ref="main"),
        head_uri=head,
        targets=(TargetSpec(name="unit", command="true"), TargetSpec(name="lint", command="true")),
        idempotency_key=key,
    )


async def test_builds_end_at_once_with_the_commits_verdict(
    ext: NoopExtensions, runner: BuildRunnerClient
) -> None:
    history = ext.source_control.history(REPO)
    good, bad = history.uri(history.commit(green=True)), history.uri(history.commit(green=False))
    overridden = history.uri(history.commit(green=True))
    ext.build_runner.set_verdict(overridden, False)

    reports = [
        await runner.status(await runner.trigger(_spec(head, f"r{i}#1#-")))
        for i, head in enumerate((good, bad, overridden))
    ]

    assert [r.state for r in reports] == [
        BuildState.SUCCEEDED,
        BuildState.FAILED,
        BuildState.FAILED,
    ]
    assert {t.state for t in reports[0].targets} == {TargetState.SUCCEEDED}
    assert [t.name for t in reports[1].targets] == ["unit", "lint"]
    assert {t.state for t in reports[1].targets} == {TargetState.FAILED}


async def test_one_build_per_idempotency_key(
    ext: NoopExtensions, runner: BuildRunnerClient
) -> None:
    history = ext.source_control.history(REPO)
    head = history.uri(history.commit())

    first = await runner.trigger(_spec(head, "request/calc/main/1#1#-"))
    again = await runner.trigger(_spec(head, "request/calc/main/1#1#-"))
    retry = await runner.trigger(_spec(head, "request/calc/main/1#2#-"))

    assert first == again != retry
    assert ext.build_runner.triggers == 3
    assert [b.key for b in ext.build_runner.builds] == [
        "request/calc/main/1#1#-",
        "request/calc/main/1#2#-",
    ]
    assert (await runner.get_log(first, "unit")).content == ""
    assert await code_of(runner.status("noop-build-999")) is grpc.StatusCode.NOT_FOUND
    assert await code_of(runner.get_log(first, "nope")) is grpc.StatusCode.NOT_FOUND
