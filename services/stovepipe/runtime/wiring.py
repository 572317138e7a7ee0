"""The composition root: the only place that builds engines, clients and brokers.

Everything a process needs is assembled here from the configuration and
handed to the stages; stages never read settings or the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from stovepipe.config import StovepipeConfig
from stovepipe.messaging import DEAD_LETTER_TOPICS, current_delivery
from stovepipe.messaging.headers import FAILURE_REASON
from stovepipe.runtime.extension_registry import ExtensionRegistry
from stovepipe.stages import (
    BuildSignalPoller,
    BuildTrigger,
    HeadIngester,
    RequestAdmitter,
    VerdictRecorder,
    topics,
)
from stovepipe.stages.ports import (
    Clock,
    DelayedPublisher,
    Extensions,
    Handler,
    Publisher,
    utc_now,
)
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.stages.revalidate import Revalidator
from stovepipe.stages.sweep import StaleRequestSweeper
from stovepipe.storage import Store, create_engine


@dataclass
class Collaborators:
    """What every stage is built from."""

    config: StovepipeConfig
    store: Store
    extensions: Extensions
    publisher: Publisher
    delayed: DelayedPublisher
    clock: Clock = utc_now

    def ingester(self) -> HeadIngester:
        return HeadIngester(self.store, self.config, self.extensions, self.publisher, self.clock)

    def revalidator(self) -> Revalidator:
        return Revalidator(self.store, self.config, self.extensions, self.publisher, self.clock)

    def admitter(self) -> RequestAdmitter:
        return RequestAdmitter(self.store, self.config, self.extensions, self.publisher, self.clock)

    def build_trigger(self) -> BuildTrigger:
        return BuildTrigger(self.store, self.config, self.extensions, self.publisher, self.clock)

    def build_signal_poller(self) -> BuildSignalPoller:
        return BuildSignalPoller(
            self.store,
            self.config,
            self.extensions,
            self.publisher,
            self.delayed,
            self.clock,
            poll_interval_s=self.config.workers.buildsignal_poll_interval_seconds,
            sweeper_stale_after_s=self.config.workers.sweeper_stale_after_seconds,
        )

    def sweeper(self) -> StaleRequestSweeper:
        return StaleRequestSweeper(
            self.store, self.config, self.extensions, self.publisher, self.clock
        )

    def verdict_recorder(self) -> VerdictRecorder:
        return VerdictRecorder(self.store, self.config, self.extensions, self.publisher, self.clock)


def reconcile_handlers(parts: Collaborators) -> dict[str, tuple[str, Handler]]:
    """One handler per stage's dead-letter topic, each with its own consumer group."""
    reconciler = DeadLetterReconciler(
        parts.store, parts.config, parts.extensions, parts.publisher, parts.clock
    )

    async def handle(message: Any) -> None:
        delivery = current_delivery.get(None)
        reason = delivery.headers.get(FAILURE_REASON, "") if delivery else ""
        await reconciler.reconcile(message, reason or "dead-lettered")

    return {f"reconcile-{t.name.split('.')[1]}": (t.name, handle) for t in DEAD_LETTER_TOPICS}


def stage_handlers(parts: Collaborators) -> dict[str, tuple[str, Handler]]:
    """Each stage's input topic and handler, by stage name."""
    return {
        "process": (topics.PROCESS, parts.admitter()),
        "build": (topics.BUILD, parts.build_trigger()),
        "buildsignal": (topics.BUILDSIGNAL, parts.build_signal_poller()),
        "record": (topics.RECORD, parts.verdict_recorder()),
    }


@asynccontextmanager
async def open_store(config: StovepipeConfig) -> AsyncIterator[Store]:
    engine = create_engine(config.storage.url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_extensions(config: StovepipeConfig) -> AsyncIterator[ExtensionRegistry]:
    registry = ExtensionRegistry(config)
    try:
        yield registry
    finally:
        await registry.close()
