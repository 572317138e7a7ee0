"""The fault stack's keeper and the tests' own bring-up never start one child twice,
and a child taken down stays down.

Why it matters: a worker started twice is two members of its consumer group, and the
second process is one nobody holds a handle to. Killing "the" replica then leaves the
other running with its share of partitions, which the scale-out test saw as survivors
that never took over (``survivors_took_over``: not within 240 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.fault_stack import FaultStack

SLEEPER = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"]


def _started(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A stack with one sleeper child, its keeper running, and process starts made slow
    (as on a loaded machine, where forking a big test process takes a while)."""
    spawn = asyncio.create_subprocess_exec

    async def slow_spawn(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.8)  # longer than the keeper's 0.5 s tick
        return await spawn(*args, **kwargs)

    stack = FaultStack(tmp_path, postgres=None)  # type: ignore[arg-type]
    (tmp_path / "logs").mkdir()
    stack._add("worker-x", SLEEPER, tmp_path / "logs")
    child = stack.children["worker-x"]
    await stack._spawn(child)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_spawn)
    stack._keeper = asyncio.create_task(stack._keep_alive())
    try:
        yield stack
    finally:
        stack._keeper.cancel()
        for pid in _started(child.log_path):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def _settled(stack: FaultStack, seconds: float = 2.0) -> list[int]:
    await asyncio.sleep(seconds)
    return [pid for pid in _started(stack.children["worker-x"].log_path) if _alive(pid)]


async def test_bring_up_and_the_keeper_start_a_held_child_once(stack: FaultStack) -> None:
    await stack.take_down("worker-x")
    await stack.bring_up("worker-x")
    alive = await _settled(stack)
    assert len(alive) == 1, f"{len(alive)} processes of worker-x are running"
    assert stack.children["worker-x"].process is not None
    assert stack.children["worker-x"].process.pid == alive[0]
    # what the replica holds is read from this start's lines only, not the last life's
    assert stack.children["worker-x"].current_log().split() == [str(alive[0])]


async def test_a_child_taken_down_while_the_keeper_restarts_it_stays_down(
    stack: FaultStack,
) -> None:
    child = stack.children["worker-x"]
    assert child.process is not None
    os.kill(child.process.pid, signal.SIGKILL)  # it crashed: the keeper will start it
    await asyncio.sleep(0.7)  # the keeper has noticed and is starting it
    await stack.take_down("worker-x")
    alive = await _settled(stack)
    assert alive == [], "a child held down was started anyway"


async def test_a_kill_takes_down_every_start(stack: FaultStack) -> None:
    await stack.take_down("worker-x")
    await stack.bring_up("worker-x")
    await asyncio.sleep(2.0)
    await stack.take_down("worker-x")
    assert await _settled(stack, 1.0) == []
