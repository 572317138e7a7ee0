"""`stovepipe up` on embedded defaults, driven through the CLI verbs, as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.git_repos import WorkRepo
from stovepipe.runtime.demo import run_demo
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import STEPS, build_targets
from stovepipe.testing import until

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

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
        assert missing.returncode == 3 and "NOT_FOUND" in missing.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(up.communicate, timeout=60)
    assert up.returncode == 0, output
    assert "stopped cleanly" in output


async def test_demo_reports_green_broken_fixed() -> None:
    assert await run_demo() == 0
