"""Builds run in the bubblewrap sandbox: real bwrap, the real runner process.

Each attack is written the way a commit would write it: the target exits 0
only if the attack worked, so a build that stays FAILED proves it did not,
and the test also checks the host afterwards. Where an attack needs a tool
(sqlite3), the test first shows that the same command works outside the
sandbox, so a missing tool cannot make it pass. Without bwrap these tests
fail with the package to install; they never skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from harness.buildrunner import listing, read_text, require_bwrap
from harness.buildrunner_process import MakeRunner, RunnerProcess
from harness.git_repos import WorkRepo
from harness.processes import process_uid, processes_with, unique_sleep
from harness.sc_double import SourceControlDouble
from stovepipe.extensions.buildrunner import (
    BuildReport,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.local import RunnerSettings, serve
from stovepipe.grpcutil import GrpcServer, open_channel
from stovepipe.testing import until
from stovepipe.testing.contracts.buildrunner import wait_terminal

AS_ROOT = os.geteuid() == 0
DEGREE_BROKEN = 1.0


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A world-writable directory the sandbox can see (``/tmp`` is private to it), so
    only the sandbox, not file permissions, stands between a build and its files."""
    path = Path(tempfile.mkdtemp(prefix="stovepipe-sandbox-test-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spec(repo: WorkRepo, head: str, targets: Sequence[TargetSpec]) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="demo/main", repository=str(repo.path), ref="main"),
        head_uri=head,
        targets=tuple(targets),
    )


async def _build(
    runner: RunnerProcess, spec: TriggerSpec
) -> tuple[str, BuildReport, dict[str, str]]:
    async with runner.client() as client:
        build_id = await client.trigger(spec)
        report = await wait_terminal(client, build_id)
        logs = {t.name: (await client.get_log(build_id, t.name)).content for t in spec.targets}
    return build_id, report, logs


def _states(report: BuildReport) -> dict[str, TargetState]:
    return {t.name: t.state for t in report.targets}


def _facts_db(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("create table validation_facts (uri text, degree real)")
        db.execute("insert into validation_facts values ('head', ?)", (DEGREE_BROKEN,))
    db.close()
    path.chmod(0o666)
    return path


def _degree(path: Path) -> float:
    with sqlite3.connect(path) as db:
        (degree,) = db.execute("select degree from validation_facts").fetchone()
    db.close()
    return float(degree)


@pytest.fixture
async def started(make_runner: MakeRunner) -> RunnerProcess:
    """A runner process with the default settings: sandboxed, nothing hidden."""
    runner = make_runner()
    await runner.start()
    return runner


async def test_a_normal_target_passes_with_git_a_home_and_a_private_tmp(
    started: RunnerProcess, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    revision = repo.commit({"a": "content\n"})
    head = double[0].mint(revision)
    command = (
        "test -f a && git rev-parse HEAD && git status --short && "
        'echo scratch > /tmp/x && cat /tmp/x && touch "$HOME/h" && mkdir out && '
        "echo built > out/file && cat out/file && env | sort"
    )

    _, report, logs = await _build(
        started, _spec(repo, head, [TargetSpec(name="t", command=command)])
    )

    assert report.state is BuildState.SUCCEEDED, logs
    assert logs["t"].startswith(f"{revision}\nscratch\nbuilt\n")
    env = dict(line.split("=", 1) for line in logs["t"].splitlines() if "=" in line)
    assert env.keys() - {"PWD", "SHLVL", "OLDPWD", "_"} == {
        "PATH",
        "HOME",
        "LANG",
        "STOVEPIPE_QUEUE",
        "STOVEPIPE_HEAD_URI",
        "STOVEPIPE_BASE_URI",
        "STOVEPIPE_BUILD_ID",
    }


async def test_the_database_attack_fails_and_the_build_stays_failed(
    make_runner: MakeRunner,
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    visible_dir: Path,
) -> None:
    assert shutil.which("sqlite3"), "this test needs the sqlite3 shell (apt-get install sqlite3)"
    state = visible_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    hidden_db = _facts_db(state / "stovepipe.db")
    visible_db = _facts_db(visible_dir / "other.db")
    control = _facts_db(visible_dir / "control.db")
    update = '"update validation_facts set degree=0"'
    subprocess.run(f"sqlite3 {control} {update}", shell=True, check=True)
    assert _degree(control) == 0.0, "the attack must work outside the sandbox"
    runner = make_runner(work_dir=state / "builds", args=["--hide", str(state)])
    await runner.start()
    head = double[0].mint(repo.commit({"a": "a"}))
    attack = (
        f"sqlite3 ../../../../stovepipe.db {update} && echo ATTACK-WORKED && exit 0; "
        f"sqlite3 {hidden_db} {update} && echo ATTACK-WORKED && exit 0; "
        f"sqlite3 {visible_db} {update} && echo ATTACK-WORKED && exit 0; "
        "exit 1"
    )

    _, report, logs = await _build(
        runner, _spec(repo, head, [TargetSpec(name="test", command=attack)])
    )

    assert report.state is BuildState.FAILED
    assert "ATTACK-WORKED" not in logs["test"]
    assert _degree(hidden_db) == DEGREE_BROKEN
    assert _degree(visible_db) == DEGREE_BROKEN


async def test_the_runner_environment_is_out_of_reach(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    secret = f"fake-admin-token-{uuid.uuid4().hex}"
    runner = make_runner(env={"STOVEPIPE_ADMIN_TOKEN": secret})
    await runner.start()
    environ = Path(f"/proc/{runner.pid}/environ")
    assert secret in read_text(environ), "control: the secret is readable outside the sandbox"
    head = double[0].mint(repo.commit({"a": "a"}))
    attack = (
        f"cat {environ} /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -a STOVEPIPE_ADMIN "
        f"&& exit 0; test -e /proc/{runner.pid} && echo RUNNER-VISIBLE; "
        "for p in /proc/[0-9]*; do echo PROCESS $(cat $p/comm); done; exit 1"
    )

    _, report, logs = await _build(
        runner, _spec(repo, head, [TargetSpec(name="steal", command=attack)])
    )

    assert report.state is BuildState.FAILED
    assert secret not in logs["steal"]
    assert "STOVEPIPE_ADMIN" not in logs["steal"]
    assert "RUNNER-VISIBLE" not in logs["steal"]
    seen = {line.split()[1] for line in logs["steal"].splitlines() if line.startswith("PROCESS")}
    assert "sh" in seen
    assert seen <= {"bwrap", "sh", "cat"}, "only the sandbox's own processes are visible"


async def test_writes_outside_the_checkout_fail(
    make_runner: MakeRunner,
    double: tuple[SourceControlDouble, GrpcServer],
    repo: WorkRepo,
    visible_dir: Path,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    runner = make_runner(work_dir=work)
    await runner.start()
    head = double[0].mint(repo.commit({"a": "a"}))
    mirrors = f"{work}/mirrors"
    attempts = {
        "etc": "echo x > /etc/stovepipe-planted",
        "visible": f"echo x > {visible_dir}/planted",
        "mirror": f"for m in {mirrors}/*.git; do echo x > $m/planted || exit 1; done",
        "mirror-ref": "git update-ref refs/heads/planted HEAD",
    }
    targets = [
        TargetSpec(name=name, command=f"{command} && exit 0; exit 1")
        for name, command in attempts.items()
    ]

    _, report, _ = await _build(runner, _spec(repo, head, targets))

    assert report.state is BuildState.FAILED
    assert _states(report) == dict.fromkeys(attempts, TargetState.FAILED)
    assert "stovepipe-planted" not in listing(Path("/etc"))
    assert "planted" not in listing(visible_dir)
    assert list(work.glob("mirrors/*.git/planted")) == []
    assert list(work.glob("mirrors/*.git/refs/heads/planted")) == []


async def test_the_network_is_off_unless_the_target_asks(
    started: RunnerProcess, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    connections: list[bool] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(True)
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    command = f"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && exit 0; exit 1"
    head = double[0].mint(repo.commit({"a": "a"}))
    try:
        _, report, _ = await _build(
            started,
            _spec(
                repo,
                head,
                [
                    TargetSpec(name="offline", command=command),
                    TargetSpec(name="online", command=command, network=True),
                ],
            ),
        )
    finally:
        listener.close()
        await listener.wait_closed()

    assert _states(report) == {"offline": TargetState.FAILED, "online": TargetState.SUCCEEDED}
    assert connections == [True]


async def test_targets_run_unprivileged(
    started: RunnerProcess, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    sleep = unique_sleep(60)
    head = double[0].mint(repo.commit({"a": "a"}))
    async with started.client() as client:
        build_id = await client.trigger(
            _spec(repo, head, [TargetSpec(name="t", command=f"exec {sleep}")])
        )
        pids: list[int] = []

        async def running() -> bool:
            pids[:] = processes_with(sleep, program="sleep")
            return bool(pids)

        await until(running, what="the target's process")
        uid = process_uid(pids[0])
        status = read_text(Path(f"/proc/{pids[0]}/status"))
        assert await client.cancel(build_id) is BuildState.CANCELLED

    assert uid == (65534 if AS_ROOT else os.getuid())
    assert "CapEff:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status


async def test_cancel_timeout_and_leftovers_stop_every_sandboxed_process(
    started: RunnerProcess, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    hang, slow, orphan = unique_sleep(60), unique_sleep(60), unique_sleep(60)
    head = double[0].mint(repo.commit({"a": "a"}))
    async with started.client() as client:
        timed = await client.trigger(
            _spec(
                repo,
                head,
                [
                    TargetSpec(name="orphan", command=f"{orphan} & exit 0"),
                    TargetSpec(name="slow", command=f"{slow} & exec {slow}", timeout_seconds=1),
                ],
            )
        )
        timed_report = await wait_terminal(client, timed)
        hanging = await client.trigger(
            _spec(repo, head, [TargetSpec(name="hang", command=f"{hang} & exec {hang}")])
        )

        async def both_running() -> bool:
            return len(processes_with(hang, program="sleep")) == 2

        await until(both_running, what="the hanging target")
        cancelled = await client.cancel(hanging)

    assert _states(timed_report) == {"orphan": TargetState.SUCCEEDED, "slow": TargetState.TIMED_OUT}
    assert cancelled is BuildState.CANCELLED
    assert processes_with(orphan) == processes_with(slow) == processes_with(hang) == []


async def test_resource_limits_apply(
    make_runner: MakeRunner, double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo
) -> None:
    runner = make_runner(args=["--max-processes", "321", "--max-file-size-bytes", "1000000"])
    await runner.start()
    head = double[0].mint(repo.commit({"a": "a"}))
    targets = [
        TargetSpec(name="limits", command="cat /proc/self/limits"),
        TargetSpec(name="big-file", command="head -c 2000000 /dev/zero > big && exit 0; exit 1"),
        TargetSpec(name="small-file", command="head -c 900000 /dev/zero > small"),
    ]

    _, report, logs = await _build(runner, _spec(repo, head, targets))

    limits = {line[:26].strip(): line[26:].split() for line in logs["limits"].splitlines()}
    assert limits["Max processes"][:2] == ["321", "321"]
    assert limits["Max file size"][:2] == ["1000000", "1000000"]
    assert limits["Max core file size"][:2] == ["0", "0"]
    assert _states(report)["big-file"] is TargetState.FAILED
    assert _states(report)["small-file"] is TargetState.SUCCEEDED


async def test_the_work_dir_is_private_to_the_runner(
    make_runner: MakeRunner, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    runner = make_runner(work_dir=work)
    await runner.start()

    assert work.stat().st_mode & 0o777 == 0o700


async def test_without_bwrap_builds_error_with_the_install_hint(
    double: tuple[SourceControlDouble, GrpcServer], repo: WorkRepo, tmp_path: Path
) -> None:
    server = await serve(
        "127.0.0.1:0",
        source_control=double[1].address,
        work_dir=tmp_path / "work",
        settings=RunnerSettings(bwrap="/nonexistent/bwrap", kill_grace_seconds=3.0),
    )
    marker = tmp_path / "ran"
    head = double[0].mint(repo.commit({"a": "a"}))
    channel = open_channel(server.address)
    try:
        from stovepipe.extensions.buildrunner import BuildRunnerClient

        client = BuildRunnerClient(channel)
        target = TargetSpec(name="t", command=f"touch {marker}")
        report = await wait_terminal(client, await client.trigger(_spec(repo, head, [target])))
    finally:
        await channel.close(None)
        await server.stop(0)

    assert report.state is BuildState.ERRORED
    assert "install bubblewrap (apt-get install bubblewrap)" in report.message
    assert "--no-sandbox" in report.message
    assert _states(report) == {"t": TargetState.CANCELLED}
    assert not marker.exists()
