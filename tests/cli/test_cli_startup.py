"""What a new user meets when a command cannot start, and how operator commands find
the configuration of a running ``stovepipe up`` (issue 15, item 8)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stovepipe.runtime.processes import free_port
from stovepipe.runtime.supervisor import ChildSpec, Supervisor

pytestmark = pytest.mark.timeout(900)  # each case starts fresh interpreters; CI may be loaded

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
IGNORES_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\nwhile True: time.sleep(1)\n"
)


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def _details(stderr: str) -> str:
    match = re.search(r"\(details: (\S+)\)", stderr)
    assert match, stderr
    path = Path(match[1])
    assert path.stat().st_mode & 0o077 == 0  # private: it may hold paths and names
    return path.read_text()


def test_an_unreachable_database_is_one_line_with_the_fix(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://nobody:hunter2@127.0.0.1:{free_port()}/none"
    done = _run("db", "upgrade", "--url", url, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot reach the database" in lines[0] and "storage.url" in lines[0]
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    kept = _details(done.stderr)
    assert "Traceback" in kept and "hunter2" not in kept


def test_a_missing_token_variable_is_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "stovepipe.yaml"
    tokens = [{"name": "gate", "role": "read", "token_env": "STOVEPIPE_TEST_NO_SUCH_VAR"}]
    config.write_text(yaml.safe_dump({"api": {"tokens": tokens}}))
    env = {k: v for k, v in os.environ.items() if k != "STOVEPIPE_TEST_NO_SUCH_VAR"}
    done = subprocess.run(
        [*CLI, "api", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "STOVEPIPE_TEST_NO_SUCH_VAR" in line and "set the variable" in line
    assert "Traceback" not in done.stderr


def test_no_broker_is_one_line_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"},
                "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"},
            }
        )
    )
    done = _run("worker", "process", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]  # aiokafka logs its own attempts first
    assert last.startswith("stovepipe worker process: cannot reach the Kafka broker")
    assert "kafka.bootstrap_servers" in last and "Traceback" not in done.stderr


def test_operator_commands_find_the_configuration_of_a_running_up(tmp_path: Path) -> None:
    database = tmp_path / "from-up.sqlite"
    effective = tmp_path / ".stovepipe" / "stovepipe.effective.yaml"
    effective.parent.mkdir()
    effective.write_text(yaml.safe_dump({"storage": {"url": f"sqlite+aiosqlite:///{database}"}}))
    done = _run("db", "upgrade", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the configuration of `stovepipe up`" in done.stderr
    assert database.exists() and str(database) in done.stdout


async def test_usage_errors_exit_4_and_version_answers(tmp_path: Path) -> None:
    missing, unknown, version, named = await asyncio.gather(
        *(
            asyncio.to_thread(_run, *args, cwd=tmp_path)
            for args in (("gate",), ("no-such-command",), ("--version",), ("version",))
        )
    )
    assert missing.returncode == 4 and unknown.returncode == 4
    assert version.returncode == 0 and version.stdout.strip() == named.stdout.strip()


async def test_a_stack_that_failed_to_start_is_stopped_without_the_drain_period(
    tmp_path: Path,
) -> None:
    """``stop(grace_s)`` kills a child that ignores SIGTERM after the short grace, not
    after the (here: hour-long) drain period a running stack gets."""
    supervisor = Supervisor(stop_timeout_s=3600)
    spec = ChildSpec("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], tmp_path / "c.log")
    (child,) = await supervisor.start_all([spec], ready_timeout_s=120)
    assert child.process.returncode is None
    await asyncio.wait_for(supervisor.stop(grace_s=0.5), timeout=300)
    assert child.process.returncode is not None
