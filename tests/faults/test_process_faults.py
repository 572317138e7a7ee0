"""Fault injection on the real process tree: kill -9, an empty broker, a PostgreSQL crash,
extensions that vanish, fail or talk nonsense.

The tests share the product as separate processes (one stack for the module,
reset between tests, each test on Queues of its own) against a real Tansu
broker and a real PostgreSQL 15 (the fault suite's own cluster, because one
test crashes it). Each makes real commits whose true verdict is known, injects
its fault while heads are in flight, and then checks the invariants in
``harness.fault_checks``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from harness.chaos_proxy import ALL, Fault
from harness.fault_checks import assert_true_verdicts, commit_of, settle, watching
from harness.fault_stack import FaultStack
from stovepipe.hooks.lanes import delivery_id

HELD = {
    "process": ("git", "IsAncestor"),
    "build": ("runner", "Trigger"),
    "buildsignal": ("runner", "Status"),
    "record": ("git", "Promote"),
}
WITHOUT_SOURCE = {"Status"}
"""Calls that carry only a build id: their hold cannot be limited to the test's Queue."""


@pytest.mark.parametrize("stage", sorted(HELD))
async def test_kill9_worker_inside_its_handler(stack: FaultStack, stage: str) -> None:
    """The worker dies while its handler waits on an extension; the restarted one finishes."""
    proxy_name, method = HELD[stage]
    proxy = stack.git_proxy if proxy_name == "git" else stack.runner_proxy
    queue = stack.queue_names[0]
    async with watching(stack) as watch:
        first = await stack.push_and_ingest(queue, green=True)  # gives process an ancestry check
        await settle(stack, watch, [first])
        only = None if method in WITHOUT_SOURCE else str(stack.repos[queue].origin)
        proxy.set_fault(method, Fault.HOLD, only=only)
        second = await stack.push_and_ingest(queue, green=True)

        async def inside() -> bool:
            return proxy.held(method) > 0

        await stack.wait_until(inside, 60, f"worker-{stage} inside {method}")
        await stack.kill(f"worker-{stage}")
        proxy.clear(method)
        ids = [first, second]
        await settle(stack, watch, ids)
        await assert_true_verdicts(stack, watch, ids)
    # The verdict can be recorded before the held call (record's Promote comes after
    # the fact), so the supervisor's restart may land after the settle: wait for it.
    await stack.wait_until(
        lambda: stack.restarts[f"worker-{stage}"] >= 1, 60, f"worker-{stage} restarted"
    )


async def test_kill9_hooks_dispatcher_mid_delivery(stack: FaultStack) -> None:
    """The dispatcher dies while a webhook is in flight: the restarted one sends it again,
    and every event for every subscription still ends delivered or failed (``settle``
    checks the hooks invariant)."""
    assert stack.store is not None
    receiver = stack.hook_receiver
    queue = stack.queue_names[0]
    let_go = threading.Event()
    receiver.hold = let_go
    try:
        async with watching(stack) as watch:
            ids = [await stack.push_and_ingest(queue, green=True)]
            await stack.wait_until(lambda: receiver.waiting > 0, 120, "a webhook held in flight")
            await stack.kill("worker-hooks")
            ids.append(await stack.push_and_ingest(queue, green=False))
            receiver.hold = None
            let_go.set()  # the held request answers a dead process
            await settle(stack, watch, ids)
            await assert_true_verdicts(stack, watch, ids)
    finally:
        receiver.hold = None
        let_go.set()
    assert stack.restarts["worker-hooks"] >= 1
    rows, _ = await stack.store.list_hook_deliveries(queue=queue, page_size=100)
    assert {r.hook for r in rows} == {"flaky", "dead"}
    # whichever delivery was held (any Queue of the stack), it was sent again
    every, _ = await stack.store.list_hook_deliveries(page_size=1000)
    sent = Counter(r.webhook_id for r in receiver.snapshot())
    # the attempt cut by kill -9 was never recorded on its row, and was made again
    assert any(sent[delivery_id(r)] > r.attempts for r in every if r.hook == "flaky"), (
        [(r.id, r.attempts) for r in every],
        sent,
    )


async def test_kill9_delay_forwarder_while_it_holds_retries(stack: FaultStack) -> None:
    """Retries wait in the forwarder; killing it loses none of them."""
    queue = stack.queue_names[1]
    async with watching(stack) as watch:
        stack.runner_proxy.set_fault("Status", Fault.UNAVAILABLE)
        ids = [await stack.push_and_ingest(queue, green=g) for g in (True, False)]

        async def retrying() -> bool:
            return stack.runner_proxy.injected["Status:unavailable"] >= 2

        await stack.wait_until(retrying, 60, "status polls retried through the delay tiers")
        await stack.kill("worker-delay")
        await asyncio.sleep(1.0)
        await stack.kill("worker-delay")
        stack.runner_proxy.clear()
        await settle(stack, watch, ids)
        await assert_true_verdicts(stack, watch, ids)


async def test_kill9_reconcile_while_dead_letters_flow(stack: FaultStack) -> None:
    """A permanent extension error dead-letters heads; killing reconcile still fails them closed."""
    queue = stack.queue_names[0]
    async with watching(stack) as watch:
        stack.runner_proxy.set_fault("Trigger", Fault.NOT_FOUND)
        ids = [await stack.push_and_ingest(queue, green=True)]

        async def dead_lettered() -> bool:
            return stack.runner_proxy.injected["Trigger:not_found"] >= 1

        await stack.wait_until(dead_lettered, 60, "a permanent Trigger failure")
        await stack.kill("worker-reconcile")
        await settle(stack, watch, ids)
        verdicts = await watch.verdicts(ids)
        assert verdicts[ids[0]] == (False, "fail_closed")
        stack.runner_proxy.clear()
        after = [await stack.push_and_ingest(queue, green=True)]
        await settle(stack, watch, ids + after)
        await assert_true_verdicts(stack, watch, after)


async def test_broker_killed_and_restarted_empty(stack: FaultStack) -> None:
    """Everything on the broker is lost; storage and the sweeper bring every head home."""
    async with watching(stack) as watch:
        stack.runner_proxy.set_fault("Status", Fault.HOLD)
        ids = [
            await stack.push_and_ingest(stack.queue_names[0], green=True),
            await stack.push_and_ingest(stack.queue_names[1], green=False),
        ]

        async def building() -> bool:
            return stack.runner_proxy.calls_in_flight("Status") > 0

        await stack.wait_until(building, 60, "builds polled")
        await stack.restart_broker()
        stack.runner_proxy.clear()
        ids.append(await stack.push_and_ingest(stack.queue_names[0], green=False))
        await settle(stack, watch, ids)
        await assert_true_verdicts(stack, watch, ids)


async def test_postgres_crashes_and_restarts(stack: FaultStack) -> None:
    async with watching(stack) as watch:
        ids = [
            await stack.push_and_ingest(stack.queue_names[0], green=True),
            await stack.push_and_ingest(stack.queue_names[1], green=True),
        ]
        await stack.restart_postgres("immediate", down_s=3.0)
        ids.append(await stack.push_and_ingest(stack.queue_names[0], green=False))
        await settle(stack, watch, ids)
        await assert_true_verdicts(stack, watch, ids)


async def test_extensions_unreachable_for_a_while_then_back(stack: FaultStack) -> None:
    """A network partition shorter than the retry budget changes no verdict."""
    async with watching(stack) as watch:
        ids = [await stack.push_and_ingest(stack.queue_names[1], green=g) for g in (True, False)]
        stack.git_proxy.set_fault(ALL, Fault.UNAVAILABLE)  # ingest needs git; cut it off after
        stack.runner_proxy.set_fault(ALL, Fault.UNAVAILABLE)
        await asyncio.sleep(4.0)
        stack.git_proxy.clear()
        stack.runner_proxy.clear()
        await settle(stack, watch, ids)
        await assert_true_verdicts(stack, watch, ids)


async def test_extension_processes_killed_and_restarted(stack: FaultStack) -> None:
    """The runner forgets its builds when it dies: those heads fail closed, never green."""
    async with watching(stack) as watch:
        ids = [await stack.push_and_ingest(stack.queue_names[0], green=True)]
        await stack.take_down("ext-runner")
        ids.append(await stack.push_and_ingest(stack.queue_names[1], green=True))
        await stack.take_down("ext-git")
        await asyncio.sleep(2.0)
        await stack.bring_up("ext-git")
        await stack.bring_up("ext-runner")
        await settle(stack, watch, ids)
        after = [await stack.push_and_ingest(stack.queue_names[0], green=g) for g in (False, True)]
        await settle(stack, watch, ids + after)
        await assert_true_verdicts(stack, watch, after)


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.EMPTY, Fault.INTERNAL])
async def test_extension_answers_garbage(stack: FaultStack, fault: Fault) -> None:
    """Nonsense from an extension is never read as a verdict, let alone a green one.

    The head under fault is truly broken, so a status read as success would show as a
    green fact; the green one after it checks that nonsense does not blame good code.
    """
    assert stack.store is not None
    queue = stack.queue_names[1]
    async with watching(stack) as watch:
        stack.runner_proxy.set_fault("Status", fault)
        stack.git_proxy.set_fault("IsAncestor", fault)
        ids = [await stack.push_and_ingest(queue, green=g) for g in (False, True)]

        async def answered_with_nonsense() -> bool:
            return stack.runner_proxy.injected[f"Status:{fault}"] >= 2

        await stack.wait_until(answered_with_nonsense, 60, f"Status polls answered {fault}")
        stack.runner_proxy.clear()
        stack.git_proxy.clear()
        await settle(stack, watch, ids)
        truth = stack.repos[queue].truth
        verdicts = await watch.verdicts(ids)
        assert verdicts[ids[-1]][0] is not None  # the newest head always gets a verdict
        for request_id, verdict in verdicts.items():
            request = await stack.store.get_request(request_id)
            assert request is not None
            real = (truth[commit_of(request.uri)], "build")
            # the real verdict, or failed closed, or superseded: never one nonsense decided
            assert verdict in (real, (False, "fail_closed"), (None, "")), (request_id, verdict)
        after = [await stack.push_and_ingest(queue, green=False)]
        await settle(stack, watch, ids + after)
        await assert_true_verdicts(stack, watch, after)
