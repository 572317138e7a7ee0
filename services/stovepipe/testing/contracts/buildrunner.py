"""The BuildRunner contract as a pytest suite any implementation runs against itself.

Stovepipe's core holds nothing but a ``BuildRunner``: a runner that passes this
suite can build Queues. To run it against your server, subclass
:class:`BuildRunnerContract` and give it a ``harness`` fixture that returns a
:class:`Harness`: the client under test (usually ``BuildRunnerClient`` over a
channel to your server, see
:func:`stovepipe.testing.contracts.build_runner_client`), a source it can
build, and the means to make heads whose targets behave as scripted
(:class:`Step`: exit code, output, hanging, paths, timeout) and to look at
what the builds left behind::

    class TestMyRunner(BuildRunnerContract):
        @pytest_asyncio.fixture
        async def harness(self, my_runner: str) -> AsyncIterator[Harness]:
            async with build_runner_client(my_runner) as client:
                yield MyRunnerHarness(client)

A target's command is ``sh ci/<name>.sh`` (see :func:`targets`); a harness
that commits real files writes that script, one that scripts a fake maps the
step straight to an outcome. The tests are async and marked for pytest-asyncio
(``pip install 'stovepipe[testing]'``); with ``pytest_asyncio.fixture`` for the
harness its strict mode works as well as auto mode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import pytest

from stovepipe.extensions.buildrunner import (
    BuildEnded,
    BuildReport,
    BuildRunner,
    BuildSource,
    BuildState,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.testing.waiting import until

__all__ = [
    "BuildRunnerContract",
    "Harness",
    "Step",
    "targets",
    "trigger_spec",
    "wait_terminal",
]


@dataclass(frozen=True)
class Step:
    """How one target of a head behaves when built."""

    name: str
    exit_code: int = 0
    output: str = ""
    hangs: bool = False
    paths: tuple[str, ...] = ()
    timeout_seconds: float | None = None


def targets(steps: Sequence[Step]) -> tuple[TargetSpec, ...]:
    """The targets a Queue would configure for ``steps``: ``sh ci/<name>.sh`` each."""
    return tuple(
        TargetSpec(
            name=s.name,
            command=f"sh ci/{s.name}.sh",
            paths=s.paths,
            timeout_seconds=s.timeout_seconds,
        )
        for s in steps
    )


class Harness(Protocol):
    """A source the runner can build, heads made to order, and a look at what builds left."""

    runner: BuildRunner
    """The implementation under test."""
    source: BuildSource
    log_limit_bytes: int
    """The runner's cap on one target's log (the suite writes past it); a few KiB keeps
    the suite quick."""

    async def commit(self, steps: Sequence[Step], *, touching: Sequence[str] = ()) -> str:
        """A new head whose targets behave as ``steps``; ``touching`` are the files it changes
        relative to the previous head."""
        ...

    def dangling_head(self) -> str:
        """A head SourceControl knows but whose revision cannot be checked out."""
        ...

    def runs(self, target: str) -> int:
        """How many times a target of that name started."""
        ...

    def alive(self, target: str) -> bool:
        """Whether work started by that target still runs."""
        ...

    async def leftovers(self) -> list[str]:
        """Resources still held by builds (checkouts, worktree records, hanging work)."""
        ...


def trigger_spec(
    harness: Harness,
    head_uri: str,
    steps: Sequence[Step],
    *,
    base_uri: str = "",
    key: str = "",
) -> TriggerSpec:
    return TriggerSpec(
        source=harness.source,
        base_uri=base_uri,
        head_uri=head_uri,
        targets=targets(steps),
        idempotency_key=key,
    )


async def wait_terminal(runner: BuildRunner, build_id: str, timeout_s: float = 60.0) -> BuildReport:
    """Poll ``status`` until the build is terminal; its last report."""
    reports: list[BuildReport] = []

    async def terminal() -> bool:
        reports.append(await runner.status(build_id))
        return reports[-1].state.terminal

    await until(terminal, timeout_s=timeout_s, what=f"{build_id} ending", interval_s=0.02)
    return reports[-1]


@pytest.mark.asyncio
class BuildRunnerContract:
    """Every BuildRunner implementation must pass these tests (see the module docstring).

    Needs a ``harness`` fixture returning a :class:`Harness`.
    """

    async def test_passing_build_succeeds_with_a_result_per_target(self, harness: Harness) -> None:
        steps = [Step("lint", paths=("*.py",)), Step("unit")]
        head = await harness.commit(steps)

        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))
        report = await wait_terminal(harness.runner, build_id)

        assert report.state is BuildState.SUCCEEDED
        assert [(t.name, t.state, t.exit_code) for t in report.targets] == [
            ("lint", TargetState.SUCCEEDED, 0),
            ("unit", TargetState.SUCCEEDED, 0),
        ]
        assert report.targets[0].paths == ("*.py",)
        assert all(t.duration_seconds >= 0 for t in report.targets)

    async def test_build_is_not_terminal_before_its_targets_end(self, harness: Harness) -> None:
        steps = [Step("slow", hangs=True)]
        head = await harness.commit(steps)
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))

        async def running() -> bool:
            return harness.alive("slow")

        await until(running, what="target start")
        report = await harness.runner.status(build_id)
        assert report.state is BuildState.RUNNING
        assert report.targets[0].state is TargetState.RUNNING
        await harness.runner.cancel(build_id)

    async def test_failing_target_fails_the_build_and_later_targets_still_run(
        self,
        harness: Harness,
    ) -> None:
        steps = [Step("compile"), Step("unit", exit_code=3), Step("docs")]
        head = await harness.commit(steps)

        report = await wait_terminal(
            harness.runner, await harness.runner.trigger(trigger_spec(harness, head, steps))
        )

        assert report.state is BuildState.FAILED
        states = {t.name: (t.state, t.exit_code) for t in report.targets}
        assert states == {
            "compile": (TargetState.SUCCEEDED, 0),
            "unit": (TargetState.FAILED, 3),
            "docs": (TargetState.SUCCEEDED, 0),
        }

    async def test_incremental_build_runs_only_targets_whose_paths_changed(
        self,
        harness: Harness,
    ) -> None:
        steps = [
            Step("docs", paths=("docs/",)),
            Step("backend", paths=("/src/**", "!/src/**/*.md")),
            Step("always"),
        ]
        base = await harness.commit(steps, touching=["src/app.py", "docs/guide.md"])
        head = await harness.commit(steps, touching=["docs/guide.md", "src/notes.md"])

        report = await wait_terminal(
            harness.runner,
            await harness.runner.trigger(trigger_spec(harness, head, steps, base_uri=base)),
        )

        assert report.state is BuildState.SUCCEEDED
        assert {t.name: t.state for t in report.targets} == {
            "docs": TargetState.SUCCEEDED,
            "backend": TargetState.SKIPPED,
            "always": TargetState.SUCCEEDED,
        }
        assert harness.runs("backend") == 0
        assert harness.runs("docs") == 1

    async def test_full_build_runs_every_target_whatever_its_paths(self, harness: Harness) -> None:
        steps = [Step("docs", paths=("docs/",)), Step("backend", paths=("src/",))]
        await harness.commit(steps, touching=["src/app.py"])
        head = await harness.commit(steps, touching=["docs/guide.md"])

        report = await wait_terminal(
            harness.runner, await harness.runner.trigger(trigger_spec(harness, head, steps))
        )

        assert [t.state for t in report.targets] == [TargetState.SUCCEEDED, TargetState.SUCCEEDED]
        assert harness.runs("backend") == 1

    async def test_target_past_its_timeout_is_timed_out_and_fails_the_build(
        self,
        harness: Harness,
    ) -> None:
        steps = [Step("stuck", hangs=True, timeout_seconds=1.0), Step("after")]
        head = await harness.commit(steps)

        report = await wait_terminal(
            harness.runner, await harness.runner.trigger(trigger_spec(harness, head, steps))
        )

        assert report.state is BuildState.FAILED
        assert [t.state for t in report.targets] == [TargetState.TIMED_OUT, TargetState.SUCCEEDED]
        assert report.targets[0].duration_seconds >= 1.0
        assert not harness.alive("stuck")

    async def test_cancel_stops_a_running_target_quickly(self, harness: Harness) -> None:
        steps = [Step("forever", hangs=True), Step("never")]
        head = await harness.commit(steps)
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))

        async def started() -> bool:
            return harness.alive("forever")

        await until(started, what="target start")
        began = time.monotonic()
        state = await harness.runner.cancel(build_id)
        report = await wait_terminal(harness.runner, build_id, timeout_s=10)

        assert time.monotonic() - began < 5.0
        assert state is BuildState.CANCELLED
        assert report.state is BuildState.CANCELLED
        assert [t.state for t in report.targets] == [TargetState.CANCELLED, TargetState.CANCELLED]
        assert not harness.alive("forever")
        assert harness.runs("never") == 0
        assert await harness.leftovers() == []

    async def test_cancelling_a_finished_build_changes_nothing(self, harness: Harness) -> None:
        steps = [Step("unit", exit_code=1)]
        head = await harness.commit(steps)
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))
        before = await wait_terminal(harness.runner, build_id)

        assert await harness.runner.cancel(build_id) is BuildState.FAILED
        assert await harness.runner.status(build_id) == before

    async def test_logs_hold_stdout_and_are_truncated_past_the_cap(self, harness: Harness) -> None:
        long_output = "".join(f"line {n:05d}\n" for n in range(3 * harness.log_limit_bytes // 10))
        steps = [Step("short", output="hello from short\n"), Step("long", output=long_output)]
        head = await harness.commit(steps)
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))
        await wait_terminal(harness.runner, build_id)

        short = await harness.runner.get_log(build_id, "short")
        long = await harness.runner.get_log(build_id, "long")

        assert short.content == "hello from short\n"
        assert not short.truncated
        assert long.truncated
        assert 0 < len(long.content.encode()) <= harness.log_limit_bytes
        assert long_output.endswith(long.content)

    async def test_skipped_target_has_an_empty_log(self, harness: Harness) -> None:
        steps = [Step("docs", paths=("docs/",), output="docs\n")]
        base = await harness.commit(steps, touching=["src/app.py"])
        head = await harness.commit(steps, touching=["src/app.py"])
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps, base_uri=base))
        await wait_terminal(harness.runner, build_id)

        log = await harness.runner.get_log(build_id, "docs")

        assert (log.content, log.truncated) == ("", False)

    async def test_same_idempotency_key_gets_the_same_build_and_one_run(
        self, harness: Harness
    ) -> None:
        steps = [Step("unit")]
        head = await harness.commit(steps)
        spec = trigger_spec(harness, head, steps, key="request/demo/main/1#0#-")

        first, second = await asyncio.gather(
            harness.runner.trigger(spec), harness.runner.trigger(spec)
        )
        await wait_terminal(harness.runner, first)
        third = await harness.runner.trigger(spec)
        other = await harness.runner.trigger(dataclasses.replace(spec, idempotency_key="other"))
        await wait_terminal(harness.runner, other)

        assert first == second == third
        assert other != first
        assert harness.runs("unit") == 2

    async def test_finished_builds_hold_no_checkouts(self, harness: Harness) -> None:
        """A runner may report a build finished before it cleans up (the verdict should
        not wait for a directory's removal), but the cleanup follows unasked."""
        steps = [Step("ok"), Step("bad", exit_code=2)]
        head = await harness.commit(steps)
        for key in ("a", "b"):
            build_id = await harness.runner.trigger(trigger_spec(harness, head, steps, key=key))
            await wait_terminal(harness.runner, build_id)

        async def cleaned_up() -> bool:
            return await harness.leftovers() == []

        await until(cleaned_up, what="the finished builds' cleanup")

    async def test_unknown_build_is_not_found(self, harness: Harness) -> None:
        for call in (
            harness.runner.status("build-never-triggered"),
            harness.runner.cancel("build-never-triggered"),
            harness.runner.get_log("build-never-triggered", "unit"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    async def test_unknown_target_log_is_not_found(self, harness: Harness) -> None:
        steps = [Step("unit")]
        head = await harness.commit(steps)
        build_id = await harness.runner.trigger(trigger_spec(harness, head, steps))
        await wait_terminal(harness.runner, build_id)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.runner.get_log(build_id, "no-such-target")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    async def test_checkout_failure_errors_the_build_without_running_targets(
        self,
        harness: Harness,
    ) -> None:
        steps = [Step("unit")]
        await harness.commit(steps)

        report = await wait_terminal(
            harness.runner,
            await harness.runner.trigger(trigger_spec(harness, harness.dangling_head(), steps)),
        )

        assert report.state is BuildState.ERRORED
        assert "checkout failed" in report.message
        assert [t.state for t in report.targets] == [TargetState.CANCELLED]
        assert harness.runs("unit") == 0
        assert await harness.leftovers() == []

    @pytest.mark.parametrize(
        "targets",
        [
            pytest.param((), id="no-targets"),
            pytest.param(
                (TargetSpec(name="a", command="true"), TargetSpec(name="a", command="true")),
                id="duplicate-name",
            ),
            pytest.param((TargetSpec(name="a", command="  "),), id="empty-command"),
            pytest.param((TargetSpec(name="a", command="true", paths=("[z-a]",)),), id="bad-glob"),
            pytest.param(
                (TargetSpec(name="a", command="true", timeout_seconds=-1),), id="negative-timeout"
            ),
        ],
    )
    async def test_malformed_trigger_is_invalid_argument(
        self, harness: Harness, targets: tuple[TargetSpec, ...]
    ) -> None:
        head = await harness.commit([Step("a")])
        spec = dataclasses.replace(trigger_spec(harness, head, []), targets=targets)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.runner.trigger(spec)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    async def test_missing_head_is_invalid_argument(self, harness: Harness) -> None:
        spec = trigger_spec(harness, "", [Step("a")])

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.runner.trigger(spec)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    async def test_watch_builds_pushes_each_end_that_status_confirms(
        self, harness: Harness
    ) -> None:
        """Every build that ends while a watch is open is announced to every open watch,
        once, with its idempotency key; by then ``status`` already says the same."""
        passing, failing = [Step("unit")], [Step("unit", exit_code=3)]
        good = await harness.commit(passing)
        bad = await harness.commit(failing)
        seen: tuple[list[BuildEnded], list[BuildEnded]] = ([], [])

        async with harness.runner.watch_builds() as first, harness.runner.watch_builds() as second:

            async def collect(stream: Any, into: list[BuildEnded]) -> None:
                async for notice in stream:
                    into.append(notice)
                    # Confirmed at once: a notice comes only after the end is durable.
                    report = await harness.runner.status(notice.build_id)
                    assert report.state is notice.state
                    if len(into) == 2:
                        return

            readers = [
                asyncio.ensure_future(collect(first, seen[0])),
                asyncio.ensure_future(collect(second, seen[1])),
            ]
            ids = [
                await harness.runner.trigger(trigger_spec(harness, good, passing, key="push-a")),
                await harness.runner.trigger(trigger_spec(harness, bad, failing, key="push-b")),
            ]
            try:
                await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
            finally:
                for reader in readers:
                    reader.cancel()

        for notices in seen:
            assert sorted((n.build_id, n.state, n.idempotency_key) for n in notices) == sorted(
                [
                    (ids[0], BuildState.SUCCEEDED, "push-a"),
                    (ids[1], BuildState.FAILED, "push-b"),
                ]
            )

    async def test_changed_paths_in_the_trigger_select_the_targets(self, harness: Harness) -> None:
        """A trigger that says what changed is believed: the runner does not ask again,
        so a target runs because the trigger named a path it owns."""
        steps = [Step("docs", paths=("docs/",)), Step("src", paths=("src/",))]
        base = await harness.commit(steps, touching=["src/app.py"])
        head = await harness.commit(steps, touching=["src/app.py"])
        spec = dataclasses.replace(
            trigger_spec(harness, head, steps, base_uri=base), changed_paths=("docs/guide.md",)
        )

        report = await wait_terminal(harness.runner, await harness.runner.trigger(spec))

        assert [(t.name, t.state) for t in report.targets] == [
            ("docs", TargetState.SUCCEEDED),
            ("src", TargetState.SKIPPED),
        ]
