"""What only the git server does: mirrors and fetches, credentials kept out of sight,
transient failures, cancelled work, health, and the limits of reading in place."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.git_repos import WorkRepo, git, init_bare
from harness.processes import process_alive, read_pid
from harness.sourcecontrol import promoting
from stovepipe.extensions.sourcecontrol import SERVICE_NAME, QueueSource, SourceControlClient
from stovepipe.extensions.sourcecontrol.errors import Unavailable
from stovepipe.extensions.sourcecontrol.git import (
    GitSettings,
    GitSourceControl,
    ServedRepositories,
    ServedRepository,
    serve,
)
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.runtime.processes import free_port
from stovepipe.testing import until
from stovepipe.testing.contracts.sourcecontrol import PROMOTION_REF


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


SLOW_REMOTE = "ssh://git.example.invalid/slow.git"


@pytest.fixture
def unreachable_url() -> str:
    return f"http://robot:s3cret-token@127.0.0.1:{free_port()}/calc.git"


@pytest.fixture
def served(
    served: list[ServedRepository], tmp_path: Path, unreachable_url: str
) -> list[ServedRepository]:
    """The contract suite's repositories and the ones the tests below make."""
    return [
        *served,
        promoting(f"file://{tmp_path / 'remote.git'}"),
        *(promoting(str(tmp_path / name)) for name in ("local", "outer/inner")),
        ServedRepository(unreachable_url),
        ServedRepository(SLOW_REMOTE),
    ]


@pytest.fixture
def remote(tmp_path: Path) -> tuple[WorkRepo, QueueSource]:
    """A bare repository known to the server only by its file:// URL, and a clone
    that pushes to it."""
    bare = init_bare(tmp_path / "remote.git")
    work = WorkRepo(tmp_path / "work", remote=bare)
    work.commit({"a.txt": "a\n"}, "first")
    return work, QueueSource("demo/main", f"file://{bare}", "main")


async def test_resolve_head_fetches_what_another_clone_pushed(
    client: SourceControlClient, remote: tuple[WorkRepo, QueueSource], tmp_path: Path
) -> None:
    work, source = remote
    before = await client.resolve_head(source)
    other = tmp_path / "other-clone"
    git("clone", "--quiet", str(work.remote), str(other))
    (other / "b.txt").write_text("b\n")
    git("add", "b.txt", cwd=other)
    git("commit", "--quiet", "-m", "pushed elsewhere", cwd=other)
    git("push", "--quiet", "origin", "main", cwd=other)
    pushed = git("rev-parse", "HEAD", cwd=other)

    after = await client.resolve_head(source)

    assert after != before
    assert (await client.describe_commit(source, after)).revision == pushed
    assert await client.list_commits(source, before, after) == [after]


async def test_a_wiped_mirror_is_rebuilt_and_old_uris_still_answer(
    client: SourceControlClient, remote: tuple[WorkRepo, QueueSource], tmp_path: Path
) -> None:
    work, source = remote
    first = await client.resolve_head(source)
    work.commit({"b.txt": "b\n"}, "second")
    second = await client.resolve_head(source)

    await asyncio.to_thread(shutil.rmtree, tmp_path / "cache")

    assert await client.changed_files(source, first, second) == ["b.txt"]
    assert (await client.describe_commit(source, first)).title == "first"


async def test_a_vanished_remote_still_answers_about_commits_in_the_mirror(
    client: SourceControlClient, remote: tuple[WorkRepo, QueueSource]
) -> None:
    work, source = remote
    head = await client.resolve_head(source)
    assert work.remote is not None
    await asyncio.to_thread(shutil.rmtree, work.remote)

    info = await client.describe_commit(source, head)
    error = await rpc_error(client.resolve_head(source))

    assert info.title == "first"
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_vanished_local_repository_fails_every_read(
    client: SourceControlClient, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "local")
    work.commit({"a.txt": "a\n"}, "first")
    source = QueueSource("demo/main", str(work.path), "main")
    head = await client.resolve_head(source)
    await asyncio.to_thread(shutil.rmtree, work.path)

    errors = [
        await rpc_error(client.describe_commit(source, head)),
        await rpc_error(client.is_ancestor(source, head, head)),
        await rpc_error(client.list_commits(source, "", head)),
        await rpc_error(client.changed_files(source, "", head)),
    ]

    assert {e.code() for e in errors} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert "does not exist" in (errors[0].details() or "")


async def test_a_directory_inside_a_repository_is_not_that_repository(
    client: SourceControlClient, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "outer")
    work.commit({"inner/a.txt": "a\n"}, "first")

    error = await rpc_error(
        client.resolve_head(QueueSource("demo/main", str(work.path / "inner"), "main"))
    )

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    "repository",
    ["relative/path", "ext::sh -c touch% /tmp/pwned", "ftp://example.invalid/r.git", "-oX=y"],
)
async def test_repositories_that_are_not_paths_or_supported_urls_are_refused(
    client: SourceControlClient, repository: str
) -> None:
    error = await rpc_error(client.resolve_head(QueueSource("demo/main", repository, "main")))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_an_unreachable_remote_is_unavailable_and_its_credentials_stay_secret(
    client: SourceControlClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    unreachable_url: str,
) -> None:
    url = unreachable_url

    error = await rpc_error(client.resolve_head(QueueSource("demo/main", url, "main")))

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert "127.0.0.1" in details
    assert "s3cret" not in details
    assert "robot" not in details
    assert "s3cret" not in caplog.text
    stored = [p.read_text(errors="replace") for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert stored
    assert not any("s3cret" in text for text in stored)


async def test_promote_refuses_a_promotion_ref_that_is_checked_out(
    client: SourceControlClient, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "local")
    work.commit({"a.txt": "a\n"}, "first")
    git("worktree", "add", "--quiet", "-b", PROMOTION_REF, str(tmp_path / "wt"), cwd=work.path)
    work.commit({"b.txt": "b\n"}, "second")
    source = QueueSource("demo/main", str(work.path), "main")

    error = await rpc_error(
        client.promote(source, await client.resolve_head(source), PROMOTION_REF)
    )

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "checked out" in (error.details() or "")


@pytest.fixture
async def mirroring_client(tmp_path: Path) -> AsyncIterator[SourceControlClient]:
    server = await serve(
        "127.0.0.1:0",
        served=ServedRepositories([promoting(str(tmp_path / "shared.git"))]),
        cache_dir=tmp_path / "mirror-cache",
        mirror_local_paths=True,
    )
    channel = open_channel(server.address)
    yield SourceControlClient(channel)
    await channel.close(None)
    await server.stop(0)


async def test_local_paths_can_be_mirrored_like_urls(
    mirroring_client: SourceControlClient, tmp_path: Path
) -> None:
    bare = init_bare(tmp_path / "shared.git")
    work = WorkRepo(tmp_path / "work", remote=bare)
    first = work.commit({"a.txt": "a\n"}, "first")
    source = QueueSource("demo/main", str(bare), "main")

    head = await mirroring_client.resolve_head(source)
    promoted = await mirroring_client.promote(source, head, PROMOTION_REF)
    second = work.commit({"b.txt": "b\n"}, "second")
    moved = await mirroring_client.resolve_head(source)

    assert (await mirroring_client.describe_commit(source, head)).revision == first
    assert promoted.moved
    assert work.revision(PROMOTION_REF) == first
    assert (await mirroring_client.describe_commit(source, moved)).revision == second
    assert list((tmp_path / "mirror-cache" / "mirrors").glob("*.git"))


async def test_health_reports_serving(git_server: GrpcServer) -> None:
    channel = open_channel(git_server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        service = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    finally:
        await channel.close(None)

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert service.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE_NAME == "stovepipe.ext.v1.SourceControlService"


@pytest.fixture
def hanging_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[QueueSource, Path]:
    """An ssh remote whose transport never answers; the pid file names its process."""
    pidfile = tmp_path / "ssh.pid"
    script = tmp_path / "hanging-ssh"
    script.write_text(f"#!/bin/sh\necho $$ > '{pidfile}'\nexec sleep 300\n")
    script.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    return QueueSource("slow/main", SLOW_REMOTE, "main"), pidfile


async def test_a_hanging_fetch_holds_up_no_other_call_and_ends_with_the_server(
    git_server: GrpcServer,
    client: SourceControlClient,
    hanging_ssh: tuple[QueueSource, Path],
    tmp_path: Path,
) -> None:
    slow_source, pidfile = hanging_ssh
    work = WorkRepo(tmp_path / "local")
    work.commit({"a.txt": "a\n"}, "first")
    local = QueueSource("demo/main", str(work.path), "main")
    slow = asyncio.create_task(client.resolve_head(slow_source))
    await until(lambda: read_pid(pidfile) is not None, what="the ssh transport to start")
    pid = read_pid(pidfile)
    assert pid is not None

    answered = await client.resolve_head(local, timeout_s=30.0)
    late = await rpc_error(client.resolve_head(slow_source, timeout_s=0.5))
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow

    assert (await client.describe_commit(local, answered)).title == "first"
    assert late.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert read_pid(pidfile) == pid
    assert process_alive(pid)
    await git_server.stop(0)
    await until(lambda: not process_alive(pid), what="the server to kill the fetch")


async def test_a_fetch_that_hangs_past_the_network_timeout_is_killed(
    hanging_ssh: tuple[QueueSource, Path], tmp_path: Path
) -> None:
    slow_source, pidfile = hanging_ssh
    backend = GitSourceControl(
        ServedRepositories([ServedRepository(SLOW_REMOTE)]),
        GitSettings(cache_dir=tmp_path / "cache", network_timeout_s=1.0),
    )
    try:
        with pytest.raises(Unavailable, match="retry later"):
            await backend.resolve_head(slow_source)
    finally:
        await backend.close()

    pid = read_pid(pidfile)
    assert pid is not None
    await until(lambda: not process_alive(pid), what="the timed-out fetch to be killed")


async def test_concurrent_calls_on_one_remote_agree(
    client: SourceControlClient, remote: tuple[WorkRepo, QueueSource]
) -> None:
    work, source = remote
    work.commit({"b.txt": "b\n"}, "second")

    heads = await asyncio.gather(*(client.resolve_head(source) for _ in range(8)))

    assert len(set(heads)) == 1
    assert (await client.describe_commit(source, heads[0])).title == "second"
