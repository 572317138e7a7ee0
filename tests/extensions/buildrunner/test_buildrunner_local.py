"""What only the local runner does: processes, environment, work directory, lifecycle."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.buildrunner import LOG_LIMIT, RUNNER_SETTINGS, listing, read_text, tree_size
from harness.chaos_proxy import chaos_proxy
from harness.git_repos import WorkRepo, git
from harness.processes import process_alive
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildRunnerClient,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.local import LocalRunnerServer, RunnerSettings, serve
from stovepipe.extensions.buildrunner.local.locator import LocatorError, SourceControlLocator
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.testing import until
from stovepipe.testing.contracts import build_runner_client
from stovepipe.testing.contracts.buildrunner import wait_terminal


def _spec(repo: WorkRepo, head: str, *targets: TargetSpec, base: str = "") -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
        base_uri=base,
        head_uri=head,
        targets=targets,
    )


@pytest.fixture
def sc(double: tuple[SourceControlDouble, GrpcServer]) -> SourceControlDouble:
    return double[0]


@pytest.fixture
async def extra_servers() -> AsyncIterator[list[LocalRunnerServer]]:
    """Servers a test starts itself (other settings or addresses); stopped at the end."""
    servers: list[LocalRunnerServer] = []
    yield servers
    for server in servers:
        await server.stop(0)


async def test_health_reports_the_service_serving(local_server: LocalRunnerServer) -> None:
    channel = open_channel(local_server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "stovepipe.ext.v1.BuildRunnerService"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close(None)


async def test_targets_get_a_minimal_environment_and_run_in_the_checkout(
    client: BuildRunnerClient,
    sc: SourceControlDouble,
    repo: WorkRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOVEPIPE_TEST_SECRET", "do-not-leak")
    out = tmp_path / "seen"
    head = sc.mint(repo.commit({"marker.txt": "here\n"}))
    base = sc.mint(repo.commit({"marker.txt": "moved\n"}))
    command = f"env > '{out}.env' && pwd > '{out}.pwd' && cat marker.txt > '{out}.marker'"

    build_id = await client.trigger(
        _spec(repo, head, TargetSpec(name="env", command=command), base=base)
    )
    report = await wait_terminal(client, build_id)

    assert report.state is BuildState.SUCCEEDED
    env_text = read_text(out.with_suffix(".env"))
    env = dict(line.split("=", 1) for line in env_text.splitlines())
    expected = {
        "PATH",
        "HOME",
        "LANG",
        "STOVEPIPE_QUEUE",
        "STOVEPIPE_HEAD_URI",
        "STOVEPIPE_BASE_URI",
        "STOVEPIPE_BUILD_ID",
    }
    assert expected <= env.keys()
    assert env.keys() - expected <= {"PWD", "SHLVL", "OLDPWD", "_"}
    assert "do-not-leak" not in env_text
    assert env["STOVEPIPE_BUILD_ID"] == build_id
    assert (env["STOVEPIPE_HEAD_URI"], env["STOVEPIPE_BASE_URI"]) == (head, base)
    assert env["STOVEPIPE_QUEUE"] == "demo/main"
    assert env["HOME"] != os.environ.get("HOME")
    assert "/builds/" in env["HOME"]
    checkout = Path(read_text(out.with_suffix(".pwd")).strip())
    assert checkout.name == "checkout"
    assert checkout.parent.name == build_id
    assert read_text(out.with_suffix(".marker")) == "here\n"
    assert listing(checkout.parent) == []


async def test_log_keeps_stderr_with_stdout(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    head = sc.mint(repo.commit({"a": "a"}))
    target = TargetSpec(name="both", command="echo to-out; echo to-err >&2; exit 4")

    build_id = await client.trigger(_spec(repo, head, target))
    report = await wait_terminal(client, build_id)
    log = await client.get_log(build_id, "both")

    assert report.targets[0].exit_code == 4
    assert log.content == "to-out\nto-err\n"


async def test_log_of_a_running_target_is_readable(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    head = sc.mint(repo.commit({"a": "a"}))
    target = TargetSpec(name="chatty", command="echo early; exec sleep 60")
    build_id = await client.trigger(_spec(repo, head, target))

    async def printed() -> bool:
        return (await client.get_log(build_id, "chatty")).content == "early\n"

    await until(printed, what="output while running")
    assert (await client.status(build_id)).state is BuildState.RUNNING
    assert await client.cancel(build_id) is BuildState.CANCELLED


async def test_processes_a_target_leaves_behind_are_stopped(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    head = sc.mint(repo.commit({"a": "a"}))
    target = TargetSpec(name="daemon", command=f"sleep 60 & echo $! > '{pidfile}'; exit 0")

    report = await wait_terminal(client, await client.trigger(_spec(repo, head, target)))

    assert report.state is BuildState.SUCCEEDED
    assert not process_alive(int(read_text(pidfile)))


async def test_target_output_past_twice_the_cap_keeps_the_tail_on_disk(
    client: BuildRunnerClient,
    sc: SourceControlDouble,
    repo: WorkRepo,
    local_server: LocalRunnerServer,
    tmp_path: Path,
) -> None:
    head = sc.mint(repo.commit({"a": "a"}))
    target = TargetSpec(name="flood", command="seq 1 200000")

    build_id = await client.trigger(_spec(repo, head, target))
    await wait_terminal(client, build_id)
    log = await client.get_log(build_id, "flood")

    assert log.truncated
    assert log.content.endswith("199999\n200000\n")
    assert tree_size(tmp_path / "work" / "logs") <= 2 * LOG_LIMIT


async def test_repository_given_as_a_file_url_is_cloned(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    head = sc.mint(repo.commit({"a": "a"}))
    spec = TriggerSpec(
        source=BuildSource(queue="demo/main", repository=f"file://{repo.path}", ref="main"),
        head_uri=head,
        targets=(TargetSpec(name="t", command="test -f a"),),
    )

    report = await wait_terminal(client, await client.trigger(spec))

    assert report.state is BuildState.SUCCEEDED


async def test_a_revision_added_after_the_mirror_was_made_is_fetched(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    target = TargetSpec(name="t", command="cat version")
    first = sc.mint(repo.commit({"version": "1\n"}))
    await wait_terminal(client, await client.trigger(_spec(repo, first, target)))
    second = sc.mint(repo.commit({"version": "2\n"}))

    build_id = await client.trigger(_spec(repo, second, target))
    report = await wait_terminal(client, build_id)

    assert report.state is BuildState.SUCCEEDED
    assert (await client.get_log(build_id, "t")).content == "2\n"


async def test_a_new_revision_is_fetched_by_itself_not_with_every_ref(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo, tmp_path: Path
) -> None:
    """A fetch of every ref (with --prune) grows with the branch count; a build of a new
    commit fetches that commit alone, so a branch deleted upstream is still mirrored."""
    target = TargetSpec(name="t", command="cat version")
    first = sc.mint(repo.commit({"version": "1\n"}))
    git("branch", "doomed", cwd=repo.path)
    await wait_terminal(client, await client.trigger(_spec(repo, first, target)))
    [mirror] = (tmp_path / "work" / "mirrors").glob("*.git")
    git("branch", "-D", "doomed", cwd=repo.path)
    second = sc.mint(repo.commit({"version": "2\n"}))

    build_id = await client.trigger(_spec(repo, second, target))
    report = await wait_terminal(client, build_id)

    assert report.state is BuildState.SUCCEEDED
    assert (await client.get_log(build_id, "t")).content == "2\n"
    assert git("--git-dir", str(mirror), "branch", "--list", "doomed") != ""


async def test_unknown_changes_run_every_target_and_say_so(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    base = sc.mint(repo.commit({"src/a": "1"}))
    head = sc.mint(repo.commit({"src/a": "2"}))
    sc.fail_changed_files = True
    target = TargetSpec(name="docs", command="true", paths=("docs/",))

    report = await wait_terminal(client, await client.trigger(_spec(repo, head, target, base=base)))

    assert report.state is BuildState.SUCCEEDED
    assert report.targets[0].state is TargetState.SUCCEEDED
    assert "changed files unknown" in report.message


async def test_what_the_trigger_says_of_the_commits_is_not_asked_again(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    """Given the head's revision and the changed paths, the runner builds without a
    single SourceControl call (ChangedFiles would fail here, and is not reached)."""
    base_revision = repo.commit({"src/a": "1"})
    head_revision = repo.commit({"src/a": "2"})
    base, head = sc.mint(base_revision), sc.mint(head_revision)
    sc.fail_changed_files = True
    targets = (
        TargetSpec(name="src", command="test -f src/a", paths=("src/",)),
        TargetSpec(name="docs", command="true", paths=("docs/",)),
    )
    spec = dataclasses.replace(
        _spec(repo, head, *targets, base=base),
        head_revision=head_revision,
        changed_paths=("src/a",),
    )

    report = await wait_terminal(client, await client.trigger(spec))

    assert report.state is BuildState.SUCCEEDED, report.message
    assert [t.state for t in report.targets] == [TargetState.SUCCEEDED, TargetState.SKIPPED]
    assert "changed files unknown" not in report.message
    assert sc.describe_calls == 0


async def test_option_like_revision_is_refused(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    repo.commit({"a": "a"})
    head = sc.mint("--upload-pack=touch /tmp/pwned")

    report = await wait_terminal(
        client, await client.trigger(_spec(repo, head, TargetSpec(name="t", command="true")))
    )

    assert report.state is BuildState.ERRORED
    assert "refusing" in report.message


async def test_unreachable_source_control_errors_the_build(
    extra_servers: list[LocalRunnerServer], repo: WorkRepo, tmp_path: Path
) -> None:
    closed = await serve("127.0.0.1:0", source_control="127.0.0.1:1", work_dir=tmp_path / "w")
    extra_servers.append(closed)
    channel = open_channel(closed.address)
    client = BuildRunnerClient(channel)
    try:
        target = TargetSpec(name="t", command="true")
        report = await wait_terminal(
            client, await client.trigger(_spec(repo, "test-commit-1", target))
        )
    finally:
        await channel.close(None)

    assert report.state is BuildState.ERRORED
    assert "UNAVAILABLE" in report.message


async def test_only_the_newest_finished_builds_are_kept(
    extra_servers: list[LocalRunnerServer],
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    tmp_path: Path,
) -> None:
    settings = RunnerSettings(max_finished_builds=2, log_limit_bytes=LOG_LIMIT)
    server = await serve(
        "127.0.0.1:0", source_control=double[1].address, work_dir=tmp_path / "w", settings=settings
    )
    extra_servers.append(server)
    channel = open_channel(server.address)
    client = BuildRunnerClient(channel)
    head = double[0].mint(repo.commit({"a": "a"}))
    try:
        spec = _spec(repo, head, TargetSpec(name="t", command="echo hi"))
        ids = []
        for n in range(3):
            ids.append(await client.trigger(dataclasses.replace(spec, idempotency_key=f"k{n}")))
            await wait_terminal(client, ids[-1])

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.status(ids[0])
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert (await client.status(ids[2])).state is BuildState.SUCCEEDED
        assert await client.trigger(dataclasses.replace(spec, idempotency_key="k0")) not in ids
    finally:
        await channel.close(None)
    assert ids[0] not in listing(tmp_path / "w" / "logs")
    assert ids[2] in listing(tmp_path / "w" / "logs")
    assert f"{ids[0]}.json" not in listing(tmp_path / "w" / "records")
    assert f"{ids[2]}.json" in listing(tmp_path / "w" / "records")


async def test_start_up_removes_what_an_earlier_process_left(
    extra_servers: list[LocalRunnerServer],
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    tmp_path: Path,
) -> None:
    work = tmp_path / "w"
    repo.commit({"a": "a"})
    mirror = work / "mirrors" / "leftover.git"
    git("clone", "--quiet", "--mirror", str(repo.path), str(mirror))
    stale_checkout = work / "builds" / "build-old" / "checkout"
    git(
        "--git-dir",
        str(mirror),
        "worktree",
        "add",
        "--quiet",
        "--detach",
        str(stale_checkout),
        "HEAD",
    )
    (work / "logs" / "build-old").mkdir(parents=True)
    (work / "logs" / "build-old" / "0.log").write_text("old\n")
    (work / "mirrors" / "half.partial").mkdir()

    extra_servers.append(
        await serve("127.0.0.1:0", source_control=double[1].address, work_dir=work)
    )

    assert listing(work / "builds") == []
    assert listing(work / "logs") == []
    assert listing(mirror / "worktrees") == []
    assert listing(work / "mirrors") == ["leftover.git"]


async def test_stopping_the_server_cancels_running_builds_and_removes_checkouts(
    double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo, tmp_path: Path
) -> None:
    server = await serve(
        "127.0.0.1:0",
        source_control=double[1].address,
        work_dir=tmp_path / "w",
        settings=RUNNER_SETTINGS,
    )
    pidfile = tmp_path / "pid"
    head = double[0].mint(repo.commit({"a": "a"}))
    channel = open_channel(server.address)
    client = BuildRunnerClient(channel)
    target = TargetSpec(name="t", command=f"echo $$ > '{pidfile}'; exec sleep 60")
    await client.trigger(_spec(repo, head, target))
    await channel.close(None)

    async def started() -> bool:
        return "pid" in listing(tmp_path) and read_text(pidfile).strip() != ""

    await until(started, what="target start")
    await server.stop(0)

    assert not process_alive(int(read_text(pidfile)))
    assert listing(tmp_path / "w" / "builds") == []


async def test_a_source_control_restart_during_checkout_does_not_error_the_build(
    client: BuildRunnerClient, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    """An errored build fails its commit closed: a passing outage must not cost a verdict."""
    head = sc.mint(repo.commit({"src/a": "1"}))
    sc.unavailable_for = 3

    report = await wait_terminal(
        client, await client.trigger(_spec(repo, head, TargetSpec(name="t", command="true")))
    )

    assert report.state is BuildState.SUCCEEDED, report.message
    assert sc.unavailable_for == 0 and sc.describe_calls >= 4


async def test_source_control_down_for_good_errors_the_build_once_retries_run_out(
    sc: SourceControlDouble, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    head = sc.mint(repo.commit({"src/a": "1"}))
    sc.unavailable_for = 1_000
    channel = open_channel(double[1].address)
    try:
        locator = SourceControlLocator(channel, retry_for_s=0.5, first_backoff_s=0.05)
        with pytest.raises(LocatorError, match="DescribeCommit failed: UNAVAILABLE"):
            await locator.revision(_spec(repo, head).source, head)
    finally:
        await channel.close(None)
    assert 2 <= sc.describe_calls < 1_000


async def test_watch_builds_passes_through_the_fault_suites_proxy(
    local_server: LocalRunnerServer, sc: SourceControlDouble, repo: WorkRepo
) -> None:
    """The fault suite puts a chaos proxy between core and the runner; the push must
    cross it, or every fault scenario would run on polling alone."""
    head = sc.mint(repo.commit({"src/a": "1"}))
    spec = dataclasses.replace(
        _spec(repo, head, TargetSpec(name="unit", command="true")),
        idempotency_key="through-the-proxy",
    )
    async with (
        chaos_proxy(local_server.address) as proxy,
        build_runner_client(proxy.address) as proxied,
        proxied.watch_builds() as notices,
    ):
        build_id = await proxied.trigger(spec)
        notice = await asyncio.wait_for(anext(aiter(notices)), 60)

    assert (notice.build_id, notice.state, notice.idempotency_key) == (
        build_id,
        BuildState.SUCCEEDED,
        "through-the-proxy",
    )
