"""What the fake offers tests of core beyond the contract: history building,
recorded calls and scripted failures; and that it can stand behind the servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from stovepipe.extensions.sourcecontrol import (
    QueueSource,
    SourceControlClient,
    SourceControlServicer,
)
from stovepipe.extensions.sourcecontrol.fake import Call, FakeSourceControl
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.extensions.sourcecontrol.servicer import SERVICE_NAME
from stovepipe.grpcutil import open_channel, start_server

SOURCE = QueueSource("demo/main", "/srv/git/calc", "main")


@pytest.fixture
def fake() -> FakeSourceControl:
    fake = FakeSourceControl()
    fake.repository(SOURCE.repository).advance("main", {"a.txt": "a"}, title="first")
    return fake


async def test_calls_are_recorded_with_their_arguments(fake: FakeSourceControl) -> None:
    head = await fake.resolve_head(SOURCE)
    await fake.promote(SOURCE, head, "verified-main")

    assert fake.calls == [
        Call("resolve_head", SOURCE, ()),
        Call("promote", SOURCE, (head, "verified-main")),
    ]
    assert fake.calls_to("promote") == [Call("promote", SOURCE, (head, "verified-main"))]


async def test_scripted_failures_come_first_then_the_fake_recovers(
    fake: FakeSourceControl,
) -> None:
    fake.fail("resolve_head", grpc.StatusCode.UNAVAILABLE, "remote flapped", times=2)

    codes = []
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await fake.resolve_head(SOURCE)
        codes.append((raised.value.code(), raised.value.details()))
    head = await fake.resolve_head(SOURCE)

    assert codes == [(grpc.StatusCode.UNAVAILABLE, "remote flapped")] * 2
    assert head == fake.uri(SOURCE, fake.repository(SOURCE.repository).head("main") or "")


def test_history_helpers_build_trees_and_guard_fast_forwards(fake: FakeSourceControl) -> None:
    repo = fake.repository(SOURCE.repository)
    first = repo.head("main")
    assert first is not None
    second = repo.advance("main", {"a.txt": None, "b.txt": "b"}, title="second")
    side = repo.commit({"c.txt": "c"}, parents=[first], title="side")
    merge = repo.commit({}, parents=[second, side], title="merge")

    assert dict(repo.tree(second)) == {"b.txt": "b"}
    assert repo.ancestors(merge) == {first, second, side, merge}
    with pytest.raises(ValueError, match="fast-forward"):
        repo.move_ref("main", side)
    repo.move_ref("main", merge)
    repo.force_push("main", first)
    assert sorted(repo.collect_garbage()) == sorted([second, side, merge])
    with pytest.raises(KeyError):
        repo.commit({}, parents=[merge])


async def test_merges_list_parents_before_children(fake: FakeSourceControl) -> None:
    repo = fake.repository(SOURCE.repository)
    first = repo.head("main")
    assert first is not None
    left = repo.advance("main", {"l": "l"})
    right = repo.commit({"r": "r"}, parents=[first])
    merge = repo.commit({"r": "r"}, parents=[left, right])
    repo.move_ref("main", merge)

    listed = await fake.list_commits(SOURCE, fake.uri(SOURCE, first), fake.uri(SOURCE, merge))

    order = [fake.uri(SOURCE, c) for c in (left, right, merge)]
    assert sorted(listed) == sorted(order)
    assert listed[-1] == order[-1]
    assert (
        await fake.is_ancestor(SOURCE, fake.uri(SOURCE, right), fake.uri(SOURCE, merge))
        is Ancestry.ANCESTOR
    )


@pytest.fixture
async def served_fake(fake: FakeSourceControl) -> AsyncIterator[SourceControlClient]:
    server = await start_server(
        "127.0.0.1:0", [SourceControlServicer(fake).register], [SERVICE_NAME]
    )
    channel = open_channel(server.address)
    yield SourceControlClient(channel)
    await channel.close(None)
    await server.stop(0)


async def test_the_servicer_carries_answers_and_status_codes_over_the_wire(
    fake: FakeSourceControl, served_fake: SourceControlClient
) -> None:
    head = await served_fake.resolve_head(SOURCE)
    fake.fail("describe_commit", grpc.StatusCode.UNAVAILABLE, "try later")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served_fake.describe_commit(SOURCE, head)
    info = await served_fake.describe_commit(SOURCE, head)

    assert head == await fake.resolve_head(SOURCE)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "try later",
    )
    assert info.title == "first"


class _Broken(FakeSourceControl):
    async def resolve_head(self, source: QueueSource, *, timeout_s: float | None = None) -> str:
        raise RuntimeError("/secret/internal/path exploded")


async def test_an_unexpected_failure_is_internal_and_keeps_its_details_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(
        "127.0.0.1:0", [SourceControlServicer(_Broken()).register], [SERVICE_NAME]
    )
    channel = open_channel(server.address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await SourceControlClient(channel).resolve_head(SOURCE)
    finally:
        await channel.close(None)
        await server.stop(0)

    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "/secret" not in (raised.value.details() or "")
    assert "/secret/internal/path exploded" in caplog.text
