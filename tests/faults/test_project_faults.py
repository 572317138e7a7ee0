"""Phase 2 under kill -9, on the real process tree (broker, PostgreSQL, git, local
runner, the reference ProjectMapper, one process per stage): killing analyze, or build
while it triggers a project-scoped build, changes no project's verdict, starts no second
project build, and leaves no Request stuck in ``analyzing``.

Every Queue has the ``calc`` and ``docs`` projects (``harness.fault_stack``); the
first Queue of a test inherits unaffected projects, the second does not, so ``docs``
gets its own build there. The per-project invariants of ``harness.fault_checks``
(no falsely green project fact, project bookmarks monotonic) are watched throughout.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from harness.chaos_proxy import Fault
from harness.fault_checks import InvariantWatch, assert_true_verdicts, settle, watching
from harness.fault_stack import FaultStack
from stovepipe.domain import FactOrigin, Request, RequestState

STACK_OPTIONS = {"projects": True}

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(900)]


async def revalidate_cli(stack: FaultStack, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stovepipe.cli.main", "revalidate", *args,
        "--api", stack.api_address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def _request(stack: FaultStack, request_id: str) -> Request:
    assert stack.store is not None
    request = await stack.store.get_request(request_id)
    assert request is not None
    return request


async def test_kill9_analyze_while_it_asks_for_changed_files(stack: FaultStack) -> None:
    queue = stack.queue_names[0]  # inherits unaffected projects
    origin = str(stack.repos[queue].origin)
    async with watching(stack) as watch:
        first = await stack.push_and_ingest(queue, green=True)
        await settle(stack, watch, [first])
        stack.git_proxy.set_fault("ChangedFiles", Fault.HOLD, only=origin)
        second = await stack.push_and_ingest(queue, green=False)

        async def inside() -> bool:
            return stack.git_proxy.held("ChangedFiles") > 0

        await stack.wait_until(inside, 120, "worker-analyze inside ChangedFiles")
        # The whole build has ended; the Request is visibly in flight, not terminal.
        assert (await _request(stack, second)).state is RequestState.ANALYZING
        await stack.kill("worker-analyze")
        stack.git_proxy.clear("ChangedFiles")
        ids = [first, second]
        await settle(stack, watch, ids, timeout_s=240)
        await assert_true_verdicts(stack, watch, ids)
    assert stack.store is not None
    broken = await _request(stack, second)
    assert broken.state is RequestState.FAILED
    first_uri = (await _request(stack, first)).uri
    docs = await stack.store.get_fact(queue, broken.uri, "docs")
    assert docs is not None and docs.origin is FactOrigin.INHERITED
    assert docs.inherited_from_uri == first_uri
    calc = await stack.store.get_fact(queue, broken.uri, "calc")
    assert calc is not None and not calc.green and calc.origin is FactOrigin.BUILD
    bookmark = await stack.store.get_project_bookmark(queue, "calc")
    assert bookmark is not None and bookmark.last_green_uri == first_uri
    assert stack.restarts["worker-analyze"] >= 1


async def _green_then_building(
    stack: FaultStack, watch: InvariantWatch, queue: str
) -> tuple[str, str]:
    """A green head settled, then a second green head whose whole build has started."""
    first = await stack.push_and_ingest(queue, green=True)
    await settle(stack, watch, [first])
    second = await stack.push_and_ingest(queue, green=True)

    async def whole_build_started() -> bool:
        return bool((await _request(stack, second)).build_id)

    await stack.wait_until(whole_build_started, 120, "the whole-repository build")
    return first, second


async def test_kill9_build_while_it_triggers_a_project_build(stack: FaultStack) -> None:
    queue = stack.queue_names[1]  # inherit_unaffected: false, so docs builds on its own
    origin = str(stack.repos[queue].origin)
    assert stack.store is not None
    async with watching(stack) as watch:
        first, second = await _green_then_building(stack, watch, queue)
        stack.runner_proxy.set_fault("Trigger", Fault.HOLD, only=origin)

        async def inside() -> bool:
            return stack.runner_proxy.held("Trigger") > 0

        await stack.wait_until(inside, 180, "worker-build inside the docs build's Trigger")
        assert (await _request(stack, second)).state is RequestState.ANALYZING
        await stack.kill("worker-build")
        stack.runner_proxy.clear("Trigger")
        ids = [first, second]
        await settle(stack, watch, ids, timeout_s=240)
        await assert_true_verdicts(stack, watch, ids)
    request = await _request(stack, second)
    assert request.state is RequestState.SUCCEEDED
    docs = await stack.store.get_fact(queue, request.uri, "docs")
    assert docs is not None and docs.green and docs.origin is FactOrigin.BUILD
    build = await stack.store.latest_project_build(queue, second, "docs")
    assert build is not None and build.status.value == "succeeded"
    docs_bookmark = await stack.store.get_project_bookmark(queue, "docs")
    assert docs_bookmark is not None and docs_bookmark.last_green_uri == request.uri
    assert stack.restarts["worker-build"] >= 1


async def test_operator_revalidates_one_project_with_the_cli(stack: FaultStack) -> None:
    """A project build that cannot start fails that project closed; ``stovepipe
    revalidate --project`` (CLI, real API) rebuilds only it once the runner is back."""
    queue = stack.queue_names[1]  # docs gets project-scoped builds
    origin = str(stack.repos[queue].origin)
    assert stack.store is not None
    async with watching(stack) as watch:
        first, second = await _green_then_building(stack, watch, queue)
        stack.runner_proxy.set_fault("Trigger", Fault.NOT_FOUND, only=origin)
        await settle(stack, watch, [first, second], timeout_s=240)
        stack.runner_proxy.clear("Trigger")
        request = await _request(stack, second)
        assert request.state is RequestState.FAILED
        docs = await stack.store.get_fact(queue, request.uri, "docs")
        assert docs is not None and docs.origin is FactOrigin.FAIL_CLOSED
        calc = await stack.store.get_fact(queue, request.uri, "calc")
        assert calc is not None and calc.green
        whole_builds = request.build_id

        code, out = await revalidate_cli(stack, queue, request.uri, "--project", "nope")
        assert code == 4 and "INVALID_ARGUMENT" in out and "calc, docs" in out, out
        code, out = await revalidate_cli(stack, queue, request.uri, "--project", "calc")
        assert code == 3 and "green is final" in out, out
        code, out = await revalidate_cli(
            stack, queue, request.uri, "--project", "docs", "--reason", "runner fixed", "--wait"
        )
        assert code == 0, out  # every project green now: the Request succeeds
        assert f"{second}  attempt 2 started" in out and "analyzing" in out, out
        await settle(stack, watch, [first, second])
        await assert_true_verdicts(stack, watch, [first, second])
    again = await _request(stack, second)
    assert (again.state, again.attempt) == (RequestState.SUCCEEDED, 2)
    docs = await stack.store.get_fact(queue, again.uri, "docs")
    assert docs is not None and docs.green and docs.attempt == 2
    whole = await stack.store.get_fact(queue, again.uri, "")
    assert whole is not None and whole.green and whole.attempt == 2
    # only docs was built again: the whole-repository build of attempt 1 is the last one
    assert whole_builds is not None
    build = await stack.store.latest_project_build(queue, second, "")
    assert build is not None and build.build_id == whole_builds
