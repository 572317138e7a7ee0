"""Drive the stages in-process against real storage and the extension fakes.

Published messages go to an in-memory outbox; ``drain`` delivers them to the
stage that owns each topic until nothing is left (delayed messages included),
optionally delivering every message twice to prove idempotency (what the
second delivery publishes exactly as the first did is collapsed, so the
doubling does not compound along a chain). The same stages run on the real
broker in ``tests/e2e``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message

from stovepipe.config import QueueConfig, StovepipeConfig, config_from_mapping
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner
from stovepipe.extensions.projectmapper.fake import FakeProjectMapper
from stovepipe.extensions.sourcecontrol.client import QueueSource
from stovepipe.extensions.sourcecontrol.fake import FakeRepository, FakeSourceControl
from stovepipe.hooks.events import VERDICT_RECORDED
from stovepipe.stages import (
    BuildSignalPoller,
    BuildTrigger,
    HeadIngester,
    RequestAdmitter,
    Revalidator,
    VerdictRecorder,
    topics,
)
from stovepipe.stages.analyze import ProjectAnalyzer
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2

REPO = "/repos/mono"


def queue_config(name: str = "mono/main", **overrides: Any) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "name": name,
        "source": {"repository": REPO, "ref": "main"},
        "build": {"targets": [{"name": "unit", "command": "true", "paths": ["src/**"]}]},
        "promotion_ref": "verified-main",
    }
    queue.update(overrides)
    return queue


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class FixedExtensions:
    def __init__(self, source_control: FakeSourceControl, runner: FakeBuildRunner) -> None:
        self.sc = source_control
        self.runner = runner
        self.mapper = FakeProjectMapper()

    def project_mapper(self, queue: QueueConfig) -> FakeProjectMapper:
        return self.mapper

    def source_control(self, queue: QueueConfig) -> FakeSourceControl:
        return self.sc

    def build_runner(self, queue: QueueConfig) -> FakeBuildRunner:
        return self.runner


@dataclass
class Outbox:
    messages: list[tuple[str, Message]] = field(default_factory=list)
    delayed: list[tuple[str, Message, float]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    async def publish(self, topic: str, message: Message) -> None:
        self.messages.append((topic, message))
        self.counts[topic] += 1

    async def publish_after(self, topic: str, message: Message, delay_s: float) -> None:
        self.delayed.append((topic, message, delay_s))


class Pipeline:
    poll_interval_s = 1.0
    stale_after = timedelta(minutes=5)
    """The sweeper's window; buildsignal's heartbeat derives from it as in production."""

    def __init__(self, store: Store, queues: list[dict[str, Any]]) -> None:
        self.store = store
        self.config: StovepipeConfig = config_from_mapping({"queues": queues}, source="test")
        self.sc = FakeSourceControl()
        self.runner = FakeBuildRunner()
        self.outbox = Outbox()
        self.clock = ManualClock()
        ext = FixedExtensions(self.sc, self.runner)
        self.extensions = ext
        args = (store, self.config, ext, self.outbox, self.clock)
        self.ingester = HeadIngester(*args)
        self.revalidator = Revalidator(*args)
        self.handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            topics.PROCESS: RequestAdmitter(*args),
            topics.BUILD: BuildTrigger(*args),
            topics.BUILDSIGNAL: BuildSignalPoller(
                store,
                self.config,
                ext,
                self.outbox,
                self.outbox,
                self.clock,
                poll_interval_s=self.poll_interval_s,
                sweeper_stale_after_s=self.stale_after.total_seconds(),
            ),
            topics.RECORD: VerdictRecorder(*args),
            topics.ANALYZE: ProjectAnalyzer(*args),
        }
        self.hook_events: list[topics_pb2.HookEvent] = []
        """Every event record published: one ``verdict.recorded`` per verdict, plus a
        transition event when the verdict differs from the Queue's previous one."""

    def repo(self, location: str = REPO) -> FakeRepository:
        return self.sc.repository(location)

    def source(self, queue: str = "mono/main") -> QueueSource:
        return QueueSource(queue=queue, repository=REPO, ref="main")

    async def drain(
        self, *, twice: bool = False, max_steps: int = 2000, lose: frozenset[str] = frozenset()
    ) -> None:
        """Deliver until nothing is left, or until only polls of still-running builds remain.

        Messages to a topic in ``lose`` are dropped, as a broker that lost its data would.
        """
        for _ in range(max_steps):
            if not self.outbox.messages:
                if not self.outbox.delayed:
                    return
                polls = [(t, m) for t, m, _ in self.outbox.delayed]
                self.outbox.delayed.clear()
                for topic, message in polls:
                    await self._deliver(topic, message, twice)
                if not self.outbox.messages and len(self.outbox.delayed) >= len(polls):
                    return
                continue
            topic, message = self.outbox.messages.pop(0)
            if topic not in lose:
                await self._deliver(topic, message, twice)
        raise AssertionError("pipeline did not settle")

    @property
    def verdict_events(self) -> list[topics_pb2.HookEvent]:
        """The ``verdict.recorded`` events only: one per verdict written."""
        return [e for e in self.hook_events if e.type == VERDICT_RECORDED]

    async def _deliver(self, topic: str, message: Message, twice: bool) -> None:
        if topic == topics.HOOK:
            assert isinstance(message, topics_pb2.HookEvent), message
            self.hook_events.append(message)
            return
        handler = self.handlers[topic]
        first = len(self.outbox.messages)
        await handler(message)
        if twice:
            again = len(self.outbox.messages)
            before = len(self.outbox.delayed)
            await handler(message)
            del self.outbox.delayed[before:]
            self._collapse_repeats(self.outbox.messages[first:again], again)

    def _collapse_repeats(self, published: list[tuple[str, Message]], start: int) -> None:
        """Drop what a second delivery published again exactly as the first did.

        Each of those is delivered twice downstream anyway; keeping both copies
        would double the messages at every hop, exponentially in a chain's
        length. Anything the second delivery publishes that the first did not
        stays, so a handler that is not idempotent is still caught.
        """
        unmatched = list(published)
        kept = []
        for item in self.outbox.messages[start:]:
            if item in unmatched:
                unmatched.remove(item)
            else:
                kept.append(item)
        del self.outbox.messages[start:]
        self.outbox.messages.extend(kept)
