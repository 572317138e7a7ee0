"""Which replica of a stage holds which partition, read from the replicas' own logs.

A scaled-out stage is a consumer group, and who holds which partition is the
group's decision. Tansu's ``DescribeGroups`` lists a group's members but not
their assignments, so each member says its share on every rebalance
(:class:`stovepipe.messaging.assignment.AssignmentLog`) and this module reads
those lines from the :class:`~harness.fault_stack.FaultStack`'s worker logs.

:func:`stage_groups` derives each stage's groups and topics from the stage
registry; :func:`survivors_took_over` is the scale-out check: with one replica
down, the other replicas of its stage hold every partition of every group of
the stage between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.fault_stack import FaultStack
from stovepipe.delays import DEFAULT_TIERS_S, tier_topic
from stovepipe.messaging import HOOK, KafkaSettings
from stovepipe.messaging.assignment import ASSIGNMENT_LINE, parse_held
from stovepipe.runtime.registry import PIPELINE, RECONCILE_GROUP, dead_letter_topics

Partition = tuple[str, int]

_LINE = re.compile(ASSIGNMENT_LINE.pattern, re.MULTILINE)


def stage_groups(settings: KafkaSettings) -> dict[str, dict[str, list[str]]]:
    """Stage name -> {physical group id: the physical topics it consumes}.

    The sweeper reads storage and buildwatch the runners' streams, not a topic: neither
    has a group.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for stage in PIPELINE:
        for topic in stage.consumes:
            group = settings.group(topic.name.split(".", 1)[1])
            groups.setdefault(stage.name, {})[group] = [settings.topic(topic.name)]
    groups["reconcile"] = {
        settings.group(RECONCILE_GROUP): [settings.topic(t.name) for t in dead_letter_topics()]
    }
    groups["delay"] = {
        settings.group("delay"): [settings.topic(tier_topic(t)) for t in DEFAULT_TIERS_S]
    }
    # the event topic's readers, each in a group named after its stage
    for reader in ("upstream", "hooks"):
        groups[reader] = {settings.group(reader): [settings.topic(HOOK.name)]}
    return groups


def stage_of(worker: str) -> str:
    """``worker-record.2`` -> ``record``."""
    return worker.removeprefix("worker-").split(".", 1)[0]


def held_in(log: str) -> dict[str, frozenset[Partition]]:
    """Group -> the partitions the last assignment line in ``log`` gave its member."""
    held: dict[str, frozenset[Partition]] = {}
    for match in _LINE.finditer(log):
        held[match["group"]] = parse_held(match["held"])
    return held


@dataclass
class Takeover:
    """One replica taken down and its stage's partitions found on the others."""

    victim: str
    lost: dict[str, frozenset[Partition]]
    """Group -> what the victim held when it went down."""
    after: dict[str, dict[str, frozenset[Partition]]] = field(default_factory=dict)
    """Peer -> group -> what it held once it had taken over."""


async def survivors_took_over(stack: FaultStack, victim: str, timeout_s: float) -> Takeover:
    """Wait until, with ``victim`` down, its stage's other replicas hold every partition of
    every group of the stage (each exactly once); what moved. ``TimeoutError`` otherwise.

    Call it after the victim is down and held down (``FaultStack.take_down``). Only each
    replica's current start counts (:meth:`~harness.fault_stack.Child.current_log`): a
    peer started again but not yet in its groups holds nothing, whatever it held before.
    """
    stage = stage_of(victim)
    groups = stage_groups(stack.kafka).get(stage, {})
    peers = [w for w in stack.workers if w != victim and stage_of(w) == stage]
    takeover = Takeover(victim, held_in(stack.children[victim].current_log()))
    wanted = {
        group: {(t, p) for t in topics for p in range(stack.partitions)}
        for group, topics in groups.items()
    }

    def covered() -> bool:
        held = {peer: held_in(stack.children[peer].current_log()) for peer in peers}
        for group, partitions in wanted.items():
            shares = [held[peer].get(group, frozenset()) for peer in peers]
            together = [tp for share in shares for tp in share]
            if len(together) != len(set(together)) or set(together) != partitions:
                return False
        takeover.after = held
        return True

    await stack.wait_until(covered, timeout_s, f"{victim}'s partitions on {', '.join(peers)}")
    return takeover
