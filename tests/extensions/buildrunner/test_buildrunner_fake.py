"""What the fake offers beyond the contract: scripting, release, records, a clock."""

from __future__ import annotations

import grpc
import pytest

from stovepipe.extensions.buildrunner import (
    BuildRunner,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.errors import rpc_error
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner, Outcome, TargetScript


def _spec(head: str, *names: str, key: str = "", timeout: float | None = None) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(queue="q", repository="r", ref="main"),
        head_uri=head,
        targets=tuple(
            TargetSpec(name=n, command=f"make {n}", timeout_seconds=timeout) for n in names
        ),
        idempotency_key=key,
    )


async def test_unscripted_heads_succeed_and_every_trigger_is_recorded() -> None:
    fake = FakeBuildRunner()
    runner: BuildRunner = fake

    build_id = await runner.trigger(_spec("h1", "unit", "lint", key="k"))
    again = await runner.trigger(_spec("h1", "unit", "lint", key="k"))

    assert again == build_id
    assert (await runner.status(build_id)).state is BuildState.SUCCEEDED
    assert len(fake.triggers) == 2
    assert fake.started == [(build_id, "unit"), (build_id, "lint")]


async def test_scripted_outcomes_per_head() -> None:
    fake = FakeBuildRunner()
    fake.script("broken", Outcome.fail("unit", exit_code=2, log="assert 1 == 2\n"))
    fake.script("slow", Outcome.time_out("unit"))
    fake.script("gone", Outcome.errored("checkout failed: no such revision"))

    broken = await fake.status(await fake.trigger(_spec("broken", "unit", "lint")))
    slow = await fake.status(await fake.trigger(_spec("slow", "unit")))
    gone = await fake.status(await fake.trigger(_spec("gone", "unit")))

    assert broken.state is BuildState.FAILED
    assert [(t.state, t.exit_code) for t in broken.targets] == [
        (TargetState.FAILED, 2),
        (TargetState.SUCCEEDED, 0),
    ]
    assert (slow.state, slow.targets[0].state) == (BuildState.FAILED, TargetState.TIMED_OUT)
    assert (gone.state, gone.message) == (BuildState.ERRORED, "checkout failed: no such revision")


async def test_hang_holds_the_build_running_until_released() -> None:
    fake = FakeBuildRunner()
    fake.script("h", Outcome.hang())
    build_id = await fake.trigger(_spec("h", "unit", "lint"))

    running = await fake.status(build_id)
    fake.release(build_id, TargetScript(state=TargetState.FAILED, exit_code=1))
    ended = await fake.status(build_id)

    assert running.state is BuildState.RUNNING
    assert [t.state for t in running.targets] == [TargetState.RUNNING, TargetState.PENDING]
    assert ended.state is BuildState.FAILED
    assert [t.state for t in ended.targets] == [TargetState.FAILED, TargetState.SUCCEEDED]
    assert fake.running() == []


async def test_hanging_target_times_out_on_the_injected_clock() -> None:
    now = [100.0]
    fake = FakeBuildRunner(clock=lambda: now[0])
    fake.script("h", Outcome.hang("unit"))
    build_id = await fake.trigger(_spec("h", "unit", timeout=30))

    now[0] += 29
    before = (await fake.status(build_id)).state
    now[0] += 1
    after = await fake.status(build_id)

    assert before is BuildState.RUNNING
    assert after.state is BuildState.FAILED
    assert after.targets[0].state is TargetState.TIMED_OUT
    assert after.targets[0].duration_seconds == 30


async def test_raising_outcome_raises_from_trigger_and_starts_nothing() -> None:
    fake = FakeBuildRunner()
    error = rpc_error(grpc.StatusCode.UNAVAILABLE, "runner restarting")
    fake.script("h", Outcome.raising(error))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fake.trigger(_spec("h", "unit"))

    assert caught.value is error
    assert len(fake.triggers) == 1
    assert fake.started == []


async def test_cancel_is_recorded_and_ends_a_hanging_build() -> None:
    fake = FakeBuildRunner()
    fake.script("h", Outcome.hang())
    build_id = await fake.trigger(_spec("h", "unit"))

    state = await fake.cancel(build_id)

    assert state is BuildState.CANCELLED
    assert fake.cancels == [build_id]
    assert (await fake.status(build_id)).targets[0].state is TargetState.CANCELLED
