"""The stage registry: the one place a stage exists.

Each entry is one worker process (``stovepipe worker <name>``): the topics it
consumes, how its handlers are built from the composition root's
collaborators, and how a failed delivery is treated. Everything else is
derived from this table:

- the choices of ``stovepipe worker`` and the processes ``stovepipe up`` and
  the fault-injection stack start (:data:`STAGES`, in start order);
- the topics created at start-up (:func:`all_topics`);
- the dead-letter topics the reconciler consumes and ``stovepipe dlq`` reads
  (:func:`dead_letter_topics`);
- the failure rule of every consumed topic (:func:`failure_rules`), and which
  ``workers.<stage>`` retry policies the configuration accepts
  (:func:`retrying_stage_names`).

Adding a stage is one entry here plus its module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stovepipe.config import StovepipeConfig
from stovepipe.delays import DEFAULT_TIERS_S, tier_topic
from stovepipe.failures.policy import OnFailure, RetryPolicy
from stovepipe.messaging import PIPELINE_TOPICS, Delivery, DeliveryHandler, TopicSpec, dlq, poison
from stovepipe.messaging import topics as t
from stovepipe.messaging.headers import FAILURE_REASON
from stovepipe.runtime.broker_watch import EPOCH_TOPIC
from stovepipe.runtime.wiring import Collaborators

Ready = Callable[[], Awaitable[None]]
"""Called by a worker once it does its job; its health then answers SERVING."""

WorkerRunner = Callable[[StovepipeConfig, asyncio.Event, Ready], Awaitable[None]]
"""A worker that is not a plain consumer: runs until ``stop`` is set, calls ``ready``
once it has started."""


@dataclass(frozen=True)
class Consumption:
    """One consumed topic: its consumer group (suffix) and the handler of its records."""

    topic: TopicSpec
    group: str
    handler: DeliveryHandler


@dataclass(frozen=True)
class Stage:
    """A worker: what it consumes, how it is built, how its failures are treated."""

    name: str
    summary: str
    consumes: tuple[TopicSpec, ...] = ()
    on_failure: OnFailure | None = None
    handlers: Callable[[Collaborators], Sequence[Consumption]] | None = None
    run: WorkerRunner | None = None
    watched: tuple[str, ...] | None = None
    """Logical topics whose disappearance means the broker lost its data
    (default: the consumed topics)."""

    @property
    def watched_topics(self) -> tuple[str, ...]:
        if self.watched is not None:
            return self.watched
        return tuple(topic.name for topic in self.consumes)


def _consumer(
    topic: TopicSpec, build: Callable[[Collaborators], Callable[[Any], Awaitable[None]]]
) -> Callable[[Collaborators], Sequence[Consumption]]:
    """A stage that consumes one topic with a payload-only handler, in its own group."""

    def handlers(parts: Collaborators) -> Sequence[Consumption]:
        handler = build(parts)

        async def on_payload(payload: Any, _delivery: Delivery) -> None:
            await handler(payload)

        return [Consumption(topic, topic.name.split(".", 1)[1], on_payload)]

    return handlers


def _pipeline_stage(name: str, topic: TopicSpec, summary: str, build: Any) -> Stage:
    return Stage(
        name,
        summary,
        consumes=(topic,),
        on_failure=OnFailure.RETRY_THEN_DEAD_LETTER,
        handlers=_consumer(topic, build),
    )


PIPELINE: tuple[Stage, ...] = (
    _pipeline_stage(
        "process",
        t.PROCESS,
        "coalesce older heads, gate on max_concurrent, choose full or incremental",
        Collaborators.admitter,
    ),
    _pipeline_stage(
        "build",
        t.BUILD,
        "trigger the BuildRunner for the admitted scope",
        Collaborators.build_trigger,
    ),
    _pipeline_stage(
        "buildsignal",
        t.BUILDSIGNAL,
        "poll the build through a delay tier, release the slot, stamp the outcome",
        Collaborators.build_signal_poller,
    ),
    _pipeline_stage(
        "record",
        t.RECORD,
        "write the fact, move the bookmark, promote the ref, emit the event",
        Collaborators.verdict_recorder,
    ),
    _pipeline_stage(
        "analyze",
        t.ANALYZE,
        "give every project a fact: from the build, inherited, or a project-scoped build",
        Collaborators.project_analyzer,
    ),
)
"""The stages of the pipeline proper, in pipeline order."""


def dead_letter_topics() -> tuple[TopicSpec, ...]:
    """The ``.dlq`` of every topic whose failures end in a dead letter."""
    return tuple(
        t.spec(dlq(topic.name))
        for stage in PIPELINE
        if stage.on_failure is OnFailure.RETRY_THEN_DEAD_LETTER
        for topic in stage.consumes
    )


RECONCILE_GROUP = "reconcile"
"""The reconciler's consumer group, for every dead-letter topic. Until 2026-12 each
topic had a group of its own (``reconcile-<stage>``); a reconciler of this version
starts its group from the earliest retained dead letter, which is safe: a Request a
letter already failed closed is only re-recorded, and an earlier attempt's letter is
skipped."""


def _reconcile_handlers(parts: Collaborators) -> Sequence[Consumption]:
    reconciler = parts.dead_letter_reconciler()

    async def settle(message: Any, delivery: Delivery) -> None:
        reason = delivery.headers.get(FAILURE_REASON, "") or "dead-lettered"
        await reconciler.reconcile(message, reason)

    # One group for every dead-letter topic, so one consumer reads them all: one
    # fetch loop and one membership instead of one per topic.
    return [Consumption(topic, RECONCILE_GROUP, settle) for topic in dead_letter_topics()]


def _upstream_handlers(parts: Collaborators) -> Sequence[Consumption]:
    from stovepipe.stages.upstream import UpstreamTrigger

    trigger = UpstreamTrigger(parts.store, parts.config, parts.ingester())

    async def on_event(event: Any, _delivery: Delivery) -> None:
        await trigger(event)

    return [Consumption(t.HOOK, "upstream", on_event)]


def _run_delay(config: StovepipeConfig, stop: asyncio.Event, ready: Ready) -> Awaitable[None]:
    from stovepipe.runtime.delay_worker import run_delay_forwarder

    return run_delay_forwarder(config, stop, ready)


def _run_hooks(config: StovepipeConfig, stop: asyncio.Event, ready: Ready) -> Awaitable[None]:
    from stovepipe.runtime.hooks_worker import run_hooks_dispatcher

    return run_hooks_dispatcher(config, stop, ready)


def _run_build_watch(config: StovepipeConfig, stop: asyncio.Event, ready: Ready) -> Awaitable[None]:
    from stovepipe.runtime.buildwatch_worker import run_build_watch

    return run_build_watch(config, stop, ready)


def _run_sweeper(config: StovepipeConfig, stop: asyncio.Event, ready: Ready) -> Awaitable[None]:
    from stovepipe.runtime.sweeper_worker import run_sweeper

    return run_sweeper(config, stop, ready)


STAGES: tuple[Stage, ...] = (
    *PIPELINE,
    Stage(
        "reconcile",
        "fail closed what was dead-lettered: release the slot, record a broken verdict",
        consumes=dead_letter_topics(),
        on_failure=OnFailure.PARK_UNREADABLE,
        handlers=_reconcile_handlers,
    ),
    Stage(
        "upstream",
        "ingest the Queues that depend_on a Queue when it records a new green commit",
        consumes=(t.HOOK,),
        on_failure=OnFailure.PARK_UNREADABLE,
        handlers=_upstream_handlers,
    ),
    Stage(
        "buildwatch",
        "hear the runners' pushed build ends (WatchBuilds) and hand them to buildsignal",
        run=_run_build_watch,
        watched=(),
    ),
    Stage(
        "delay",
        "forward delay-tier records to their target topic once due",
        run=_run_delay,
        watched=tuple(tier_topic(s) for s in DEFAULT_TIERS_S),
    ),
    Stage(
        "hooks",
        "deliver events to the Queues' hooks (webhook, kafka, log), retried per subscription",
        consumes=(t.HOOK,),
        on_failure=OnFailure.PARK_UNREADABLE,
        run=_run_hooks,
    ),
    Stage(
        "sweeper",
        "re-drive Requests that stopped moving and repair lost verdicts, from storage",
        run=_run_sweeper,
        watched=(),
    ),
)
"""Every worker, in the order ``stovepipe up`` starts them."""

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)

ALL = "all"
"""``stovepipe worker all``: every stage above in one process (``stovepipe up``'s default)."""

WORKER_NAMES: tuple[str, ...] = (*STAGE_NAMES, ALL)
"""What ``stovepipe worker`` accepts."""


def stages_named(name: str) -> tuple[Stage, ...]:
    """The stages a worker called ``name`` runs: one, or every one for :data:`ALL`."""
    return STAGES if name == ALL else (stage(name),)


def stage(name: str) -> Stage:
    """The registered stage ``name``; ``KeyError`` listing the known names otherwise."""
    for entry in STAGES:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown stage {name!r}; choose one of {', '.join(STAGE_NAMES)}")


def retrying_stage_names() -> tuple[str, ...]:
    """Stages with a ``workers.<stage>`` retry policy."""
    return tuple(s.name for s in STAGES if s.on_failure is OnFailure.RETRY_THEN_DEAD_LETTER)


def failure_rules(
    config: StovepipeConfig,
) -> Mapping[str, tuple[OnFailure, RetryPolicy | None]]:
    """Per consumed logical topic: how its failures are treated and with which policy."""
    rules: dict[str, tuple[OnFailure, RetryPolicy | None]] = {}
    for entry in STAGES:
        if entry.on_failure is None:
            continue
        policy = (
            config.workers.retry_policy(entry.name)
            if entry.on_failure is OnFailure.RETRY_THEN_DEAD_LETTER
            else None
        )
        for topic in entry.consumes:
            rules[topic.name] = (entry.on_failure, policy)
    return rules


def in_flight_limits(config: StovepipeConfig) -> Mapping[str, int]:
    """Per consumed logical topic: how many records of a partition are handled at once."""
    return {
        topic.name: config.workers.in_flight(entry.name)
        for entry in STAGES
        for topic in entry.consumes
    }


def all_topics() -> list[str]:
    """Every logical topic to create at start-up: pipeline topics, their dead letters
    and poison parking, the delay tiers, and the broker-epoch marker."""
    names = [topic.name for topic in PIPELINE_TOPICS]
    dead = [topic.name for topic in dead_letter_topics()]
    parked = [
        topic.name.removesuffix(".dlq")
        for entry in STAGES
        if entry.on_failure is OnFailure.PARK_UNREADABLE
        for topic in entry.consumes
    ]
    return [
        *names,
        EPOCH_TOPIC,
        *dead,
        *dict.fromkeys(poison(name) for name in [*(d.removesuffix(".dlq") for d in dead), *parked]),
        *(tier_topic(s) for s in DEFAULT_TIERS_S),
    ]
