"""`stovepipe up` on embedded defaults, driven through the CLI verbs, as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml

from harness.git_repos import WorkRepo
from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.extensions.sourcecontrol import QueueSource, SourceControlClient
from stovepipe.grpcutil import open_channel
from stovepipe.runtime.demo import run_demo
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import STEPS, build_targets
from stovepipe.testing import until

# `stovepipe up` starts eleven processes (the console among them) before the first
# verdict: on a loaded 2-core machine that alone can take minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.timeout(420)]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


async def _wait_healthy(api: str, up: subprocess.Popen[str], env: dict[str, str]) -> None:
    async def answers() -> bool:
        assert up.poll() is None, f"stovepipe up exited early with {up.returncode}"
        done = await asyncio.to_thread(_cli, "last-green", "up/main", env=env)
        return done.returncode in (0, 2)

    await until(answers, timeout_s=120, what="the API of `stovepipe up` answering", interval_s=0.2)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _assert_extension_tokens_stay_secret(up_pid: int, state_dir: Path) -> None:
    """Each extension server has its own token, passed through the environment only."""
    effective = yaml.safe_load((state_dir / "stovepipe.effective.yaml").read_text())
    names = {
        endpoint["token_env"].encode()
        for kind in ("sourcecontrol", "buildrunner", "hooks")
        for endpoint in effective["extensions"][kind].values()
    }
    processes = _descendants(up_pid)
    tokens = {
        value
        for pid in processes
        for key, _, value in (
            entry.partition(b"=")
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        )
        if key in names
    }
    assert len(names) == 3 and len(tokens) == 3, (names, len(tokens))
    for pid in processes:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert not any(token in cmdline for token in tokens), f"a token is on pid {pid}'s argv"
    for path in state_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(token in content for token in tokens), f"a token is in {path}"


async def _assert_extensions_refuse_anonymous_callers(state_dir: Path, repo: Path) -> None:
    effective = yaml.safe_load((state_dir / "stovepipe.effective.yaml").read_text())
    git = open_channel(effective["extensions"]["sourcecontrol"]["git"]["address"])
    runner = open_channel(effective["extensions"]["buildrunner"]["local"]["address"])
    try:
        calls = [
            SourceControlClient(git).resolve_head(QueueSource("up/main", str(repo), "main")),
            BuildRunnerClient(runner).status("build-0"),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await git.close(None)
        await runner.close(None)


async def test_up_runs_the_stack_and_the_cli_verbs_work(tmp_path: Path) -> None:
    repo = WorkRepo(tmp_path / "repo")
    api = f"127.0.0.1:{free_port()}"
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"listen": api},
                "workers": {"buildsignal_poll_interval_seconds": 0.2},
                "queues": [
                    {
                        "name": "up/main",
                        "source": {"repository": str(repo.path)},
                        "build": {"targets": build_targets()},
                    }
                ],
            }
        )
    )
    env = {**os.environ, "STOVEPIPE_API": api}
    up = subprocess.Popen(
        [*CLI, "up", "--config", str(config), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        await _wait_healthy(api, up, env)
        repo.commit(STEPS[0].files, STEPS[0].title)
        green = await asyncio.to_thread(_cli, "ingest", "up/main", "--wait", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        _assert_extension_tokens_stay_secret(up.pid, tmp_path / "state")
        await _assert_extensions_refuse_anonymous_callers(tmp_path / "state", repo.path)
        uri = green.stdout.split()[1]
        assert (await asyncio.to_thread(_cli, "gate", "up/main", uri, env=env)).returncode == 0
        repo.commit(STEPS[1].files, STEPS[1].title)
        broken = await asyncio.to_thread(_cli, "ingest", "up/main", "--wait", env=env)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        broken_uri = broken.stdout.split()[1]
        gate = await asyncio.to_thread(_cli, "gate", "up/main", broken_uri, env=env)
        assert gate.returncode == 1 and "NOT GREEN" in gate.stdout
        unknown = await asyncio.to_thread(
            _cli, "gate", "up/main", uri.replace("@", "@0", 1)[:-1], env=env
        )
        assert unknown.returncode in (2, 3)
        last = await asyncio.to_thread(_cli, "last-green", "up/main", env=env)
        assert last.returncode == 0 and last.stdout.strip() == uri
        status = await asyncio.to_thread(_cli, "status", green.stdout.split()[0], env=env)
        assert "succeeded" in status.stdout and "full" in status.stdout
        missing = await asyncio.to_thread(_cli, "ingest", "nope/main", env=env)
        assert missing.returncode == 4 and "NOT_FOUND" in missing.stderr  # invalid input
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(up.communicate, timeout=60)
    assert up.returncode == 0, output
    assert "stopped cleanly" in output


async def test_up_whose_start_fails_part_way_stops_what_started_and_exits_1(
    tmp_path: Path,
) -> None:
    """The local runner cannot start (its work directory is a file) while the other
    extensions have: ``up`` stops them all at once, leaves nothing running, exits 1."""
    repo = WorkRepo(tmp_path / "repo")
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"listen": f"127.0.0.1:{free_port()}"},
                # a running stack would get 600 s to drain; one that never came up does not
                "kafka": {"graceful_timeout_seconds": 600},
                "queues": [
                    {
                        "name": "up/main",
                        "source": {"repository": str(repo.path)},
                        "build": {"targets": build_targets()},
                    }
                ],
            }
        )
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "builds").write_text("not a directory")
    up = subprocess.Popen(
        [*CLI, "up", "--config", str(config), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        # a liveness bound only: starting four extensions on a loaded machine is slow
        output, _ = await asyncio.to_thread(up.communicate, timeout=300)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    assert up.returncode == 1, output
    assert "could not start the stack: ext local-runner exited with code 1" in output
    assert "Not a directory" in output  # the runner's own reason, from its log
    assert _running_under(state) == []


def _running_under(state: Path) -> list[str]:
    """Command lines of live processes that name ``state`` (every child of that ``up``)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            status = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if status not in ("Z", "X") and any(str(state).encode() in arg for arg in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


async def test_demo_reports_green_broken_fixed() -> None:
    assert await run_demo() == 0
