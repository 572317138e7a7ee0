"""The supervisor of ``stovepipe up``: it restarts any exit, gives up on a crash loop,
and stops the whole unit within one grace period. The children are tiny Python scripts
that print ``ready <pid>`` when they are ready."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from stovepipe.runtime.broker_watch import EXIT_RESTART
from stovepipe.runtime.embedded import FAILED_START_GRACE_S, supervise_until_stopped
from stovepipe.runtime.supervisor import (
    ChildExited,
    ChildSpec,
    CrashLoop,
    ReadyCheck,
    RestartPolicy,
    Supervisor,
)

FAST = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.2, ready_timeout_s=30)
DEADLINE_S = 30.0

SLEEPER = "import os, time\nprint(f'ready {os.getpid()}', flush=True)\nwhile True: time.sleep(1)\n"

LEAVES_ON_TRIGGER = """
import os, signal, sys, time
marker, trigger = sys.argv[1], sys.argv[2]
first = not os.path.exists(marker)
open(marker, "a").close()
if not first and {again_fails}:
    print("boom: cannot start again", flush=True)
    sys.exit(1)
print(f"ready {{os.getpid()}}", flush=True)
while first and not os.path.exists(trigger):
    time.sleep(0.02)
if first:
    {leave}
while True:
    time.sleep(1)
"""

IGNORES_SIGTERM = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"grandchild {grandchild.pid}", flush=True)
print(f"ready {os.getpid()}", flush=True)
while True:
    time.sleep(1)
"""

RECORDS_SIGTERM = """
import os, signal, sys, time
name, order, linger = sys.argv[1], sys.argv[2], float(sys.argv[3])

def on_term(*_):
    with open(order, "a") as out:
        out.write(f"{name} term\\n")
    time.sleep(linger)
    with open(order, "a") as out:
        out.write(f"{name} exit\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
print(f"ready {os.getpid()}", flush=True)
while True:
    time.sleep(1)
"""


def _ready_when_said(supervisor: Supervisor, name: str, log: Path) -> ReadyCheck:
    """Ready once the *current* process of ``name`` printed ``ready <its pid>``."""

    async def check() -> bool:
        pid = next(c.pid for c in supervisor.children if c.spec.name == name)
        return _says(log, f"ready {pid}")

    return check


def _says(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


def _spec(
    supervisor: Supervisor, name: str, code: str, tmp_path: Path, *args: str, last: bool = False
) -> ChildSpec:
    log = tmp_path / f"{name}.log"
    argv = [sys.executable, "-u", "-c", code, *args]
    return ChildSpec(name, argv, log, ready=_ready_when_said(supervisor, name, log), stop_last=last)


async def _until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not check():
        assert loop.time() < deadline, f"{what} not within {DEADLINE_S:.0f}s"
        await asyncio.sleep(0.05)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie has, it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@asynccontextmanager
async def _supervising(supervisor: Supervisor) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(supervisor.supervise())
    try:
        yield task
    finally:
        await supervisor.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), DEADLINE_S)


@pytest.mark.parametrize(
    ("leave", "described"),
    [
        ("sys.exit(3)", "exited with code 3"),
        (
            f"sys.exit({EXIT_RESTART})",
            f"exited with code {EXIT_RESTART} (asks to be started afresh)",
        ),
        ("sys.exit(0)", "exited with code 0"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL"),
    ],
    ids=["error", "asks-for-restart", "clean-exit", "kill-9"],
)
async def test_any_exit_is_restarted_after_its_backoff_reported_and_waited_for(
    tmp_path: Path, leave: str, described: str
) -> None:
    reports: list[str] = []
    supervisor = Supervisor(stop_timeout_s=5, restart=FAST, report=reports.append)
    code = LEAVES_ON_TRIGGER.format(leave=leave, again_fails=False)
    trigger = tmp_path / "leave"
    first, bystander = await supervisor.start_all(
        [
            _spec(supervisor, "victim", code, tmp_path, str(tmp_path / "marker"), str(trigger)),
            _spec(supervisor, "bystander", SLEEPER, tmp_path),
        ]
    )
    async with _supervising(supervisor):
        trigger.touch()
        await _until(lambda: any("restarted" in r for r in reports), "the restart")
        victim = supervisor.children[0]
        assert victim.spec.name == "victim" and victim.pid != first.pid
        assert victim.process.returncode is None
        assert f"ready {victim.pid}" in (tmp_path / "victim.log").read_text()
        assert supervisor.children[1] is bystander and bystander.process.returncode is None
    assert supervisor.restarts == {"victim": 1}
    assert reports[0].startswith(f"victim (pid {first.pid}) {described}; restarting it in")
    assert "restart 1 of at most 5 within 60s" in reports[0]
    assert reports[1] == f"victim restarted (pid {victim.pid}) and ready"


async def test_a_crash_loop_names_the_child_its_restarts_and_its_log_and_restarts_nothing_more(
    tmp_path: Path,
) -> None:
    reports: list[str] = []
    policy = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.2, max_restarts=3)
    supervisor = Supervisor(stop_timeout_s=5, restart=policy, report=reports.append)
    code = LEAVES_ON_TRIGGER.format(leave="sys.exit(1)", again_fails=True)
    trigger = tmp_path / "leave"
    _, bystander = await supervisor.start_all(
        [
            _spec(supervisor, "looper", code, tmp_path, str(tmp_path / "marker"), str(trigger)),
            _spec(supervisor, "bystander", SLEEPER, tmp_path),
        ]
    )
    async with _supervising(supervisor) as supervising:
        trigger.touch()
        with pytest.raises(CrashLoop) as caught:
            await asyncio.wait_for(asyncio.shield(supervising), DEADLINE_S)
        assert bystander.process.returncode is None  # giving up stops nothing by itself
    assert caught.value.name == "looper" and caught.value.restarts == 3
    message = str(caught.value)
    assert message.startswith("looper is crash-looping: it was restarted 3 times within 60s")
    assert "looper exited with code 1" in message
    assert "boom: cannot start again" in message  # the tail of its log
    assert str(tmp_path / "looper.log") in message
    assert supervisor.restarts == {"looper": 3}
    assert sum("restarting it in" in r for r in reports) == 3
    assert bystander.process.returncode is not None


async def test_a_child_that_exits_while_starting_fails_the_start_with_its_log(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(stop_timeout_s=5)
    failing = _spec(supervisor, "broken", "print('no such thing'); raise SystemExit(2)", tmp_path)
    try:
        with pytest.raises(ChildExited, match=r"(?s)broken exited with code 2.*no such thing"):
            await supervisor.start_all([_spec(supervisor, "fine", SLEEPER, tmp_path), failing])
    finally:
        await supervisor.stop()
    assert supervisor.children == []


async def test_a_start_that_fails_part_way_stops_what_started_within_the_short_grace(
    tmp_path: Path,
) -> None:
    """``up`` stops a stack that never came up with FAILED_START_GRACE_S, not the drain
    period a running stack gets: children that ignore SIGTERM are killed once it ends."""
    said: list[str] = []
    supervisor = Supervisor(stop_timeout_s=600, report=said.append)  # a drain nobody waits for
    started = await supervisor.start_all(
        [
            _spec(supervisor, "ext", IGNORES_SIGTERM, tmp_path, last=True),
            _spec(supervisor, "worker", IGNORES_SIGTERM, tmp_path),
        ]
    )
    failing = _spec(supervisor, "api", "raise SystemExit(1)", tmp_path)
    with pytest.raises(ChildExited, match="api exited with code 1"):
        await supervisor.start_all([failing])
    await asyncio.wait_for(supervisor.stop(FAILED_START_GRACE_S), DEADLINE_S)
    assert [c.process.returncode for c in started] == [-signal.SIGKILL] * 2
    assert said == [
        f"still running {FAILED_START_GRACE_S:g}s after the stop began, so killed: "
        f"worker (pid {started[1].pid}), ext (pid {started[0].pid})"
    ]
    assert supervisor.children == []


async def test_stop_is_one_grace_period_for_all_and_kills_what_ignores_sigterm(
    tmp_path: Path,
) -> None:
    grace_s, margin_s = 3.0, 3.0
    supervisor = Supervisor(stop_timeout_s=grace_s)
    children = await supervisor.start_all(
        [
            _spec(supervisor, "ext", IGNORES_SIGTERM, tmp_path, last=True),
            _spec(supervisor, "worker", IGNORES_SIGTERM, tmp_path),
            _spec(supervisor, "api", IGNORES_SIGTERM, tmp_path),
        ]
    )
    grandchildren = [
        int(line.split()[1])
        for child in children
        for line in child.spec.log_path.read_text().splitlines()
        if line.startswith("grandchild ")
    ]
    assert len(grandchildren) == 3
    # one child at a time, each with its own grace period, would take three of them
    await asyncio.wait_for(supervisor.stop(), grace_s + margin_s)
    assert [c.process.returncode for c in children] == [-signal.SIGKILL] * 3
    for pid in grandchildren:  # killed with their process group
        await _until(functools.partial(_gone, pid), f"grandchild {pid} gone")


async def test_stop_asks_the_api_and_workers_first_and_the_extensions_once_they_are_gone(
    tmp_path: Path,
) -> None:
    order = tmp_path / "order"
    supervisor = Supervisor(stop_timeout_s=20)
    children = await supervisor.start_all(
        [
            _spec(supervisor, "ext", RECORDS_SIGTERM, tmp_path, "ext", str(order), "0", last=True),
            _spec(supervisor, "worker", RECORDS_SIGTERM, tmp_path, "worker", str(order), "1"),
            _spec(supervisor, "api", RECORDS_SIGTERM, tmp_path, "api", str(order), "0"),
        ]
    )
    await asyncio.wait_for(supervisor.stop(), 20 + 3)
    assert [c.process.returncode for c in children] == [0, 0, 0]
    lines = order.read_text().splitlines()
    assert sorted(lines) == sorted(
        f"{n} {e}" for n in ("ext", "worker", "api") for e in ("term", "exit")
    )
    assert lines.index("ext term") > lines.index("worker exit")  # the worker drained first
    assert lines.index("ext term") > lines.index("api exit")


async def test_up_reports_a_crash_loop_in_red_stops_every_child_and_exits_1(
    tmp_path: Path,
) -> None:
    said: list[tuple[str, str | None]] = []
    policy = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.2, max_restarts=2)
    supervisor = Supervisor(stop_timeout_s=5, restart=policy)
    code = LEAVES_ON_TRIGGER.format(leave="sys.exit(1)", again_fails=True)
    trigger = tmp_path / "leave"
    children = await supervisor.start_all(
        [
            _spec(supervisor, "looper", code, tmp_path, str(tmp_path / "marker"), str(trigger)),
            _spec(supervisor, "bystander", SLEEPER, tmp_path),
        ]
    )
    trigger.touch()
    running = supervise_until_stopped(supervisor, asyncio.Event(), lambda *s: said.append(s))
    assert await asyncio.wait_for(running, DEADLINE_S) == 1
    (report, style), stopping = said
    assert style == "red" and report.startswith("looper is crash-looping")
    assert "restarted 2 times" in report and "boom: cannot start again" in report
    assert stopping == ("stopping ...", None)
    assert supervisor.children == []
    assert all(c.process.returncode is not None for c in children)


async def test_up_stops_every_child_when_asked_and_exits_0(tmp_path: Path) -> None:
    said: list[tuple[str, str | None]] = []
    supervisor = Supervisor(stop_timeout_s=5)
    children = await supervisor.start_all([_spec(supervisor, "stays", SLEEPER, tmp_path)])
    stop = asyncio.Event()
    running = asyncio.create_task(
        supervise_until_stopped(supervisor, stop, lambda *s: said.append(s))
    )
    stop.set()
    assert await asyncio.wait_for(running, DEADLINE_S) == 0
    assert said == [("stopping ...", None)]
    assert [c.process.returncode for c in children] == [-signal.SIGTERM]
