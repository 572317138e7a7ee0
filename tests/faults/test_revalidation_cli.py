"""Re-validation end to end: an operator uses ``stovepipe revalidate`` on the real stack.

The product runs as processes on a real broker and PostgreSQL; the fault is a
BuildRunner that answers NOT_FOUND (a permanent error), which dead-letters the
head and fails it closed. Once the runner is back, the CLI starts a new
attempt and the real verdict displaces the fail-closed one. A commit that is
truly broken needs ``--flaky`` and stays broken. Invariants are watched
throughout (nothing displaces green, no fact overwritten, bookmark monotonic).
"""

from __future__ import annotations

import asyncio
import sys

from harness.chaos_proxy import Fault
from harness.fault_checks import settle, watching
from harness.fault_stack import FaultStack
from stovepipe.domain import FactOrigin


async def revalidate_cli(stack: FaultStack, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stovepipe.cli.main",
        "revalidate",
        *args,
        "--api",
        stack.api_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_operator_revalidates_fail_closed_and_flaky_verdicts(stack: FaultStack) -> None:
    assert stack.store is not None
    store = stack.store
    queue = stack.queue_names[0]
    async with watching(stack) as watch:
        stack.runner_proxy.set_fault("Trigger", Fault.NOT_FOUND)
        closed = await stack.push_and_ingest(queue, green=True)
        await settle(stack, watch, [closed])
        assert (await watch.verdicts([closed]))[closed] == (False, "fail_closed")
        stack.runner_proxy.clear()
        request = await store.get_request(closed)
        assert request is not None
        uri = request.uri

        code, out = await revalidate_cli(stack, queue, uri, "--reason", "runner fixed", "--wait")
        assert code == 0, out  # exit 0: the new attempt is green
        assert f"{closed}  attempt 2 started" in out and "succeeded" in out
        await settle(stack, watch, [closed])
        attempts = await store.list_fact_attempts(queue, uri, "")
        assert [(f.attempt, f.green, f.origin) for f in attempts] == [
            (1, False, FactOrigin.FAIL_CLOSED),
            (2, True, FactOrigin.BUILD),
        ]
        answer = await store.get_fact(queue, uri, "")
        assert answer is not None and answer.green and answer.attempt == 2
        state = await store.get_queue(queue)
        assert state is not None and state.last_green_request_id == closed

        code, out = await revalidate_cli(stack, queue, uri, "--flaky")
        assert code == 3 and "FAILED_PRECONDITION" in out and "green is final" in out

        broken = await stack.push_and_ingest(queue, green=False)
        await settle(stack, watch, [closed, broken])
        broken_request = await store.get_request(broken)
        assert broken_request is not None
        code, out = await revalidate_cli(stack, queue, broken_request.uri)
        assert code == 3 and "--flaky" in out, out
        code, out = await revalidate_cli(stack, queue, broken_request.uri, "--flaky", "--wait")
        assert code == 1, out  # still broken: a real failure does not pass on a re-run
        await settle(stack, watch, [closed, broken])
        again = await store.list_fact_attempts(queue, broken_request.uri, "")
        assert [(f.attempt, f.green, f.origin) for f in again] == [
            (1, False, FactOrigin.BUILD),
            (2, False, FactOrigin.BUILD),
        ]
        state = await store.get_queue(queue)
        assert state is not None and state.last_green_request_id == closed
        assert watch.violations == []
