"""The safety and liveness invariants the fault-injection suite checks.

Safety, watched continuously while faults happen (:meth:`InvariantWatch.observe`):

* no falsely green fact — a green fact for a commit whose build is truly broken;
* no dishonest build verdict — a broken fact of origin ``build`` for a commit
  that is truly green (a fault may fail a commit *closed*, never blame its code);
* no fact overwritten — the fact of each attempt, once seen, never changes;
* nothing displaces green — once a commit's answer is green it stays that fact;
* the bookmark never moves backwards in ingest order, and never names a
  commit without a green fact;
* the promotion ref never moves backwards in the branch's history;
* per project (a stack with ``projects``): no falsely green project fact (a
  project's truth: ``harness.fault_stack.project_truth``), and each project's
  bookmark never moves backwards and never names a commit without a green
  fact of that project.

Liveness and bookkeeping, which must all hold within a bounded time after the
faults stop (:meth:`InvariantWatch.liveness_problems`): every ingested head is terminal and every
verdict is recorded (with projects: every project's fact of the attempt too), ``in_flight_count`` equals the number of admitted
non-terminal Requests (and the slot holders are exactly those), the bookmark
sits on the newest green Request and the promotion ref on the bookmark. With
hooks in the stack (:class:`HookCheck`), also: no hook delivery is left
pending, and every event on ``stovepipe.hook`` that a subscription of a
watched Queue wants has its delivery row — so every such event ends
``delivered`` or ``failed``, never stuck and never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from harness.fault_stack import FAULT_PROJECTS, FaultStack, QueueHistory, project_truth
from stovepipe.config import load_config
from stovepipe.config.hooks import HookConfig
from stovepipe.domain import FactOrigin, RequestId, RequestState, ValidationFact
from stovepipe.hooks.events import VERDICT_TYPES
from stovepipe.hooks.intake import MAX_ID, wants
from stovepipe.runtime.event_feed import verified_event
from stovepipe.storage import HookDelivery, Store
from stovepipe.v1 import topics_pb2

_VERDICTS = (RequestState.SUCCEEDED, RequestState.FAILED)


def commit_of(uri: str) -> str:
    """The commit id inside an opaque git URI (``git+<key>#<branch>@<sha>``)."""
    return uri.rsplit("@", 1)[-1]


@dataclass(frozen=True)
class HookCheck:
    """The stack's subscriptions per Queue, and a reader of every event on the hook topic."""

    subscriptions: dict[str, tuple[HookConfig, ...]]
    events: Callable[[], Awaitable[list[topics_pb2.HookEvent]]]


def hook_check(stack: FaultStack) -> HookCheck | None:
    """The hooks invariant's inputs for ``stack``; ``None`` when it runs no hooks."""
    if not stack.hooks:
        return None
    config = load_config(stack.root / "stovepipe.yaml")
    return HookCheck({q.name: tuple(q.hooks) for q in config.queues}, stack.hook_events)


@dataclass
class InvariantWatch:
    store: Store
    repos: dict[str, QueueHistory]
    hooks: HookCheck | None = None
    projects: tuple[str, ...] = ()
    """The projects every Queue has (empty: Phase 1 Queues)."""
    violations: list[str] = field(default_factory=list)
    observations: int = 0
    _facts: dict[tuple[str, str, str, int], ValidationFact] = field(default_factory=dict)
    _answers: dict[tuple[str, str, str], ValidationFact] = field(default_factory=dict)
    _bookmark_n: dict[str, int] = field(default_factory=dict)
    _promotion_pos: dict[str, int] = field(default_factory=dict)
    _project_bookmark_n: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def project_facts_seen(self) -> int:
        """How many per-project facts (of any attempt) the watch has checked."""
        return sum(1 for key in self._facts if key[2])

    def _violate(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)

    async def observe(self) -> None:
        """One snapshot of facts, bookmarks and promotion refs; storage errors skip it."""
        try:
            for queue, repo in self.repos.items():
                await self._observe_queue(queue, repo)
                await self._observe_bookmark(queue, repo)
                for project in self.projects:
                    await self._observe_project_bookmark(queue, project)
        except Exception:  # the database may be the fault being injected right now
            return
        self.observations += 1

    async def _observe_queue(self, queue: str, repo: QueueHistory) -> None:
        for answer in await self._all_facts(queue):
            key = (answer.queue, answer.uri, answer.project)
            before = self._answers.get(key)
            if before is not None and before.green and before != answer:
                self._violate(f"green displaced: {key}: {before} -> {answer}")
            self._answers[key] = answer
            for fact in await self.store.list_fact_attempts(*key):
                self._check_fact(fact, repo)

    def _check_fact(self, fact: ValidationFact, repo: QueueHistory) -> None:
        key = (fact.queue, fact.uri, fact.project, fact.attempt)
        seen = self._facts.setdefault(key, fact)
        if seen != fact:
            self._violate(f"fact overwritten: {key}: {seen} -> {fact}")
        truth = project_truth(fact.project, repo.truth.get(commit_of(fact.uri)))
        scope = f" project {fact.project}" if fact.project else ""
        if fact.green and truth is False:
            self._violate(f"falsely green{scope}: {fact.uri} (request {fact.request_id})")
        if not fact.green and fact.origin is FactOrigin.BUILD and truth is True:
            self._violate(f"a good commit{scope} blamed by a build verdict: {fact.uri}")

    async def _observe_project_bookmark(self, queue: str, project: str) -> None:
        bookmark = await self.store.get_project_bookmark(queue, project)
        if bookmark is None or not bookmark.last_green_request_id:
            return
        n = RequestId.parse(bookmark.last_green_request_id).n
        key = (queue, project)
        if n < self._project_bookmark_n.get(key, 0):
            self._violate(f"{queue}: project {project} bookmark moved back to request {n}")
        self._project_bookmark_n[key] = max(n, self._project_bookmark_n.get(key, 0))
        fact = await self.store.get_fact(queue, bookmark.last_green_uri or "", project)
        if fact is None or not fact.green:
            self._violate(
                f"{queue}: project {project} bookmark on {bookmark.last_green_uri} "
                "without a green fact"
            )

    async def _observe_bookmark(self, queue: str, repo: QueueHistory) -> None:
        state = await self.store.get_queue(queue)
        if state is not None and state.last_green_request_id:
            n = RequestId.parse(state.last_green_request_id).n
            if n < self._bookmark_n.get(queue, 0):
                self._violate(f"{queue}: bookmark moved back to request {n}")
            self._bookmark_n[queue] = max(n, self._bookmark_n.get(queue, 0))
            bookmarked = await self.store.get_fact(queue, state.last_green_uri or "", "")
            if bookmarked is None or not bookmarked.green:
                self._violate(f"{queue}: bookmark on {state.last_green_uri} without a green fact")
        position = repo.position(await asyncio.to_thread(repo.ref, "verified-main"))
        if position < self._promotion_pos.get(queue, -1):
            self._violate(f"{queue}: promotion ref moved back to commit #{position}")
        self._promotion_pos[queue] = max(position, self._promotion_pos.get(queue, -1))

    async def _all_facts(self, queue: str) -> list[ValidationFact]:
        facts: list[ValidationFact] = []
        for project in ("", *self.projects):
            token = ""
            while True:
                page, token = await self.store.list_facts(
                    queue, project, page_size=200, page_token=token
                )
                facts.extend(page)
                if not token:
                    break
        return facts

    async def unsettled(self, request_ids: list[str], *, first_only: bool = False) -> list[str]:
        """The ingested Requests that are not terminal, or terminal without their fact;
        with ``first_only``, at most one (newest first: the likeliest to be in flight)."""
        waiting = []
        for request_id in reversed(request_ids):
            request = await self.store.get_request(request_id)
            settled = request is not None and request.terminal
            if settled and request is not None and request.state in _VERDICTS:
                for scope in ("", *self.projects):
                    recorded = await self.store.get_fact_of_attempt(
                        request.queue, request.uri, scope, request.attempt
                    )
                    settled = settled and recorded is not None
            if not settled:
                waiting.append(request_id)
                if first_only:
                    break
        return waiting[::-1]

    async def liveness_problems(self, request_ids: list[str]) -> list[str]:
        """What still keeps the run from being settled; empty once it is.

        Poll it after the faults stop; whatever is left when the time bound
        runs out is a liveness violation.
        """
        problems = [f"{r} not settled" for r in await self.unsettled(request_ids)]
        for queue, repo in self.repos.items():
            problems.extend(await self._queue_problems(queue, repo))
        if self.hooks is not None and not problems:
            problems.extend(await self._hook_problems(self.hooks))
        return problems

    async def _hook_problems(self, hooks: HookCheck) -> list[str]:
        """Pending deliveries first (cheap); once none is, events with no delivery at all."""
        rows: dict[tuple[str, str, str], HookDelivery] = {}
        for queue in self.repos:
            token = ""
            while True:
                page, token = await self.store.list_hook_deliveries(
                    queue=queue, page_size=500, page_token=token
                )
                rows.update({(r.queue, r.event_id, r.hook): r for r in page})
                if not token:
                    break
        stuck = [
            f"hook delivery {r.id} still {r.status.value} after {r.attempts} attempts "
            f"({r.last_error[:120]})"
            for r in rows.values()
            if not r.status.terminal
        ]
        if stuck:
            return stuck
        try:
            events = await hooks.events()
        except Exception as exc:  # the broker may still be coming back
            return [f"the hook topic is not readable yet: {exc}"]
        problems: list[str] = []
        for event in events:
            queue = event.data.queue if event.type in VERDICT_TYPES else event.subject
            if queue not in self.repos or not 0 < len(event.id) <= MAX_ID:
                continue
            wanted = [h for h in hooks.subscriptions.get(queue, ()) if wants(h, event)]
            if not wanted or not event.type.startswith("dev.stovepipe."):
                continue
            if (
                event.type in VERDICT_TYPES
                and await verified_event(self.store, event, "fault check") is None
            ):
                continue  # not a genuine verdict (a test forged it): the dispatcher drops it
            problems.extend(
                f"{queue}: event {event.id} ({event.type}) has no delivery to hook {hook.name}"
                for hook in wanted
                if (queue, event.id, hook.name) not in rows
            )
        return problems

    async def _queue_problems(self, queue: str, repo: QueueHistory) -> list[str]:
        state = await self.store.get_queue(queue)
        if state is None:
            return []
        problems = []
        processing = await self.store.list_requests(
            queue, states=[RequestState.PROCESSING], limit=1000
        )
        if state.in_flight_count != len(processing):
            problems.append(
                f"{queue}: in_flight_count {state.in_flight_count} != "
                f"{len(processing)} admitted non-terminal Requests"
            )
        if set(state.slot_holders) != {r.id for r in processing}:
            problems.append(f"{queue}: slot holders {sorted(state.slot_holders)} != processing")
        newest_green = await self.store.list_requests(
            queue, states=[RequestState.SUCCEEDED], limit=1
        )
        if newest_green and state.last_green_request_id != newest_green[0].id:
            problems.append(
                f"{queue}: bookmark on {state.last_green_request_id}, "
                f"newest green is {newest_green[0].id}"
            )
        if state.last_green_uri:
            promoted = await asyncio.to_thread(repo.ref, "verified-main")
            if promoted != commit_of(state.last_green_uri):
                problems.append(f"{queue}: promotion ref {promoted} behind the bookmark")
        return problems

    async def verdicts(self, request_ids: list[str]) -> dict[str, tuple[bool | None, str]]:
        """Each Request's recorded verdict (green? / origin) next to nothing else."""
        found: dict[str, tuple[bool | None, str]] = {}
        for request_id in request_ids:
            request = await self.store.get_request(request_id)
            fact = await self.store.get_fact(request.queue, request.uri, "") if request else None
            found[request_id] = (fact.green, fact.origin.value) if fact else (None, "")
        return found


def stack_projects(stack: FaultStack) -> tuple[str, ...]:
    """The projects of the stack's Queues (none unless it runs with ``projects``)."""
    return tuple(p["name"] for p in FAULT_PROJECTS) if stack.projects else ()


@contextlib.asynccontextmanager
async def watching(stack: FaultStack, every_s: float = 0.2) -> AsyncIterator[InvariantWatch]:
    """Observe the safety invariants every ``every_s`` while the body runs."""
    assert stack.store is not None
    watch = InvariantWatch(
        stack.store,
        {q: stack.repos[q] for q in stack.queue_names},
        hook_check(stack),
        projects=stack_projects(stack),
    )

    async def loop() -> None:
        while True:
            await watch.observe()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(
    stack: FaultStack, watch: InvariantWatch, request_ids: list[str], timeout_s: float = 120.0
) -> None:
    """Wait (bounded) until every head is settled and the books balance; no violation seen."""

    async def done() -> bool:
        if await watch.unsettled(request_ids, first_only=True):
            return False  # cheap while heads are still in flight
        return not await watch.liveness_problems(request_ids)

    try:
        await stack.wait_until(done, timeout_s, "every head settled")
    except TimeoutError:
        problems = await watch.liveness_problems(request_ids)
        logs = "\n".join(f"--- {name}\n{stack.log_tail(name, 15)}" for name in stack.children)
        raise AssertionError(f"not settled: {problems}\n{logs}") from None
    await watch.observe()
    assert watch.violations == []
    assert watch.observations > 0


async def assert_true_verdicts(
    stack: FaultStack, watch: InvariantWatch, request_ids: list[str]
) -> None:
    """Every settled head got its real verdict: no fault was allowed to decide it."""
    assert stack.store is not None
    for request_id, (green, origin) in (await watch.verdicts(request_ids)).items():
        request = await stack.store.get_request(request_id)
        assert request is not None
        if request.state.value == "superseded":
            continue
        truth = stack.repos[request.queue].truth[commit_of(request.uri)]
        assert (green, origin) == (truth, "build"), (request_id, request.reason)
        for project in stack_projects(stack):
            fact = await stack.store.get_fact(request.queue, request.uri, project)
            assert fact is not None, (request_id, project)
            expected = project_truth(project, truth)
            assert fact.green == expected, (request_id, project, fact.reason)
            assert fact.origin is not FactOrigin.FAIL_CLOSED, (request_id, project, fact.reason)
