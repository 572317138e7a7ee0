"""A seeded, randomized soak: heads flow while faults are combined at random.

Each *scenario* picks one to three faults, pushes a few commits (each green or
broken, and the stack knows which) to random Queues at random moments, injects
the faults at random moments while that work is in flight, then lifts every
fault and waits — for a bounded time — until every head has settled. The
invariants of :mod:`harness.fault_checks` are watched throughout, hook
deliveries included (every event for a subscription ends delivered or failed).

The same seed replays the same choices (timing on a busy machine still varies,
so a failure is reproduced by re-running the seed, not guaranteed by it).
``tests/faults/test_soak.py`` runs a few scenarios in CI; ``make soak`` runs a
larger size and prints the same report.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from harness.chaos_proxy import ALL, ChaosProxy, Fault
from harness.fault_checks import InvariantWatch, hook_check, stack_projects
from harness.fault_stack import WORKERS, FaultStack

Progress = Callable[[str], None]


@dataclass
class SoakReport:
    seed: int
    scenarios: int = 0
    heads: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    """How often each entry of :data:`FAULTS` was injected."""
    faults: Counter[str] = field(default_factory=Counter)
    """What each injection did, as the fault describes itself."""
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    observations: int = 0
    seconds: float = 0.0
    worker_restarts: int = 0
    project_facts: int = 0
    """Per-project facts checked (Phase 2 stacks; 0 without projects)."""

    def lines(self) -> list[str]:
        injected = sum(self.faults.values())
        out = [
            f"seed {self.seed}: {self.scenarios} scenarios, {self.heads} heads, "
            f"{injected} faults injected, {len(self.violations)} violations "
            f"({self.seconds:.0f} s, {self.observations} invariant snapshots, "
            f"{self.worker_restarts} process restarts, {self.project_facts} project facts)",
            "faults: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())),
            "outcomes: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.outcomes.items())),
        ]
        out.extend(f"VIOLATION: {v}" for v in self.violations)
        return out


FaultAction = Callable[[FaultStack, random.Random], Awaitable[str]]

_HELD_BY = {
    "IsAncestor": ("git", "process"),
    "Promote": ("git", "record"),
    "Trigger": ("runner", "build"),
    "Status": ("runner", "buildsignal"),
}


def _proxy(stack: FaultStack, which: str) -> ChaosProxy:
    return stack.git_proxy if which == "git" else stack.runner_proxy


async def kill_worker(stack: FaultStack, rng: random.Random) -> str:
    name = f"worker-{rng.choice(WORKERS)}"
    await stack.kill(name)
    return f"kill -9 {name}"


async def kill_worker_in_handler(stack: FaultStack, rng: random.Random) -> str:
    method = rng.choice(sorted(_HELD_BY))
    which, stage = _HELD_BY[method]
    proxy = _proxy(stack, which)
    proxy.set_fault(method, Fault.HOLD)
    try:
        deadline = time.monotonic() + 5.0
        while proxy.calls_in_flight(method) == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        inside = proxy.calls_in_flight(method) > 0
        await stack.kill(f"worker-{stage}")
    finally:
        proxy.clear(method)
    return f"kill -9 worker-{stage} {'inside' if inside else 'near'} {method}"


async def kill_hooks_mid_delivery(stack: FaultStack, rng: random.Random) -> str:
    """kill -9 the hooks dispatcher while a webhook is held at the receiver (when one
    comes within a few seconds): the delivery it was making must still end settled."""
    if not stack.hooks:
        return await kill_worker(stack, rng)
    receiver = stack.hook_receiver
    let_go = threading.Event()
    receiver.hold = let_go
    try:
        deadline = time.monotonic() + rng.uniform(1.0, 5.0)
        while receiver.waiting == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        inside = receiver.waiting > 0
        await stack.kill("worker-hooks")
    finally:
        receiver.hold = None
        let_go.set()
    return f"kill -9 worker-hooks {'inside' if inside else 'near'} a webhook"


async def restart_broker(stack: FaultStack, rng: random.Random) -> str:
    await stack.restart_broker(down_s=rng.uniform(0.2, 2.0))
    return "broker killed, restarted empty"


async def restart_postgres(stack: FaultStack, rng: random.Random) -> str:
    mode = rng.choice(["immediate", "fast"])
    await stack.restart_postgres(mode, down_s=rng.uniform(0.2, 3.0))
    return f"postgres restart ({mode})"


async def partition_extension(stack: FaultStack, rng: random.Random) -> str:
    which = rng.choice(["git", "runner"])
    proxy = _proxy(stack, which)
    proxy.set_fault(ALL, Fault.UNAVAILABLE)
    await asyncio.sleep(rng.uniform(0.5, 4.0))
    proxy.clear(ALL)
    return f"{which} unreachable"


async def extension_garbage(stack: FaultStack, rng: random.Random) -> str:
    which = rng.choice(["git", "runner"])
    method = rng.choice(
        ["IsAncestor", "ResolveHead", "Promote"] if which == "git" else ["Trigger", "Status"]
    )
    fault = rng.choice([Fault.GARBAGE, Fault.EMPTY, Fault.INTERNAL, Fault.NOT_FOUND])
    proxy = _proxy(stack, which)
    proxy.set_fault(method, fault)
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    proxy.clear(method)
    return f"{which}.{method} answers {fault}"


async def restart_extension(stack: FaultStack, rng: random.Random) -> str:
    name = rng.choice(
        [
            "ext-git",
            "ext-runner",
            *(["ext-hooks"] if stack.hooks else []),
            *(["ext-project-mapper"] if stack.projects else []),
        ]
    )
    await stack.take_down(name)
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    await stack.bring_up(name)
    return f"kill -9 {name}, down a while"


async def kill_api(stack: FaultStack, rng: random.Random) -> str:
    await stack.kill("api")
    return "kill -9 api"


PROCESS_FAULTS = frozenset(
    {"kill_worker", "kill_worker_in_handler", "kill_hooks_mid_delivery", "restart_broker",
     "restart_postgres", "restart_extension", "kill_api"}
)  # fmt: skip
"""Faults that act on a process through the stack, which counts each one in
``FaultStack.faults``; the others act on a chaos proxy."""

FAULTS: dict[str, FaultAction] = {
    "kill_worker": kill_worker,
    "kill_worker_in_handler": kill_worker_in_handler,
    "kill_hooks_mid_delivery": kill_hooks_mid_delivery,
    "restart_broker": restart_broker,
    "restart_postgres": restart_postgres,
    "partition_extension": partition_extension,
    "extension_garbage": extension_garbage,
    "restart_extension": restart_extension,
    "kill_api": kill_api,
}


async def run_soak(
    stack: FaultStack,
    *,
    seed: int,
    scenarios: int,
    max_seconds: float,
    settle_s: float = 180.0,
    progress: Progress = lambda _: None,
) -> SoakReport:
    """Run up to ``scenarios`` scenarios, stopping early after ``max_seconds``."""
    assert stack.store is not None
    rng = random.Random(seed)
    report = SoakReport(seed=seed)
    watch = InvariantWatch(
        stack.store,
        {q: stack.repos[q] for q in stack.queue_names},
        hook_check(stack),
        projects=stack_projects(stack),
    )
    started = time.monotonic()
    observer = asyncio.create_task(_observe(watch))
    try:
        for index in range(scenarios):
            if time.monotonic() - started > max_seconds:
                progress(f"time bound of {max_seconds:.0f}s reached after {index} scenarios")
                break
            await _scenario(stack, watch, rng, report, index, settle_s, progress)
            report.scenarios += 1
            if watch.violations:
                break
    finally:
        observer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await observer
    await watch.observe()
    report.violations = list(watch.violations)
    report.observations = watch.observations
    report.seconds = time.monotonic() - started
    report.worker_restarts = sum(stack.restarts.values())
    report.project_facts = watch.project_facts_seen
    return report


async def _observe(watch: InvariantWatch) -> None:
    while True:
        await watch.observe()
        await asyncio.sleep(0.25)


async def _scenario(
    stack: FaultStack,
    watch: InvariantWatch,
    rng: random.Random,
    report: SoakReport,
    index: int,
    settle_s: float,
    progress: Progress,
) -> None:
    kinds = rng.sample(sorted(FAULTS), k=rng.randint(1, 3))
    heads = [
        (rng.uniform(0.0, 3.0), rng.choice(stack.queue_names), rng.random() < 0.7)
        for _ in range(rng.randint(2, 5))
    ]
    faults = [(rng.uniform(0.0, 3.0), kind) for kind in kinds]
    request_ids: list[str] = []

    async def push(delay: float, queue: str, green: bool) -> None:
        await asyncio.sleep(delay)
        request_ids.append(await stack.push_and_ingest(queue, green, timeout_s=120.0))

    async def inject(delay: float, kind: str) -> None:
        await asyncio.sleep(delay)
        report.faults[await FAULTS[kind](stack, random.Random(rng.random()))] += 1
        report.kinds[kind] += 1

    await asyncio.gather(*(push(*head) for head in heads), *(inject(*fault) for fault in faults))
    stack.git_proxy.clear()
    stack.runner_proxy.clear()
    for name in list(stack.children):
        await stack.bring_up(name)
    report.heads += len(set(request_ids))  # two quick pushes may be one head
    deadline = time.monotonic() + settle_s
    problems = await _liveness(watch, request_ids)
    while problems and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        problems = await _liveness(watch, request_ids)
    for problem in problems:
        watch.violations.append(f"scenario {index}: after {settle_s:.0f}s: {problem}")
    for green, origin in (await watch.verdicts(request_ids)).values():
        report.outcomes[_outcome(green, origin)] += 1
    progress(
        f"scenario {index + 1}: {len(request_ids)} heads, faults "
        f"[{', '.join(kinds)}], settled in {settle_s - max(0.0, deadline - time.monotonic()):.0f}s"
        f", violations so far {len(watch.violations)}"
    )


async def _liveness(watch: InvariantWatch, request_ids: list[str]) -> list[str]:
    try:
        return await watch.liveness_problems(request_ids)
    except Exception as exc:  # storage may still be coming back
        return [f"storage not answering: {exc}"]


def _outcome(green: bool | None, origin: str) -> str:
    if green is None:
        return "superseded"
    return f"{'green' if green else 'broken'} ({origin})"
