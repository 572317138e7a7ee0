"""Say which partitions a consumer-group member holds, each time the group rebalances.

Which replica of a stage consumes which partition is the group's decision, and
the broker is not obliged to tell (Tansu's ``DescribeGroups`` lists members but
no assignments). Each member therefore logs its own share on every rebalance,
one line in a fixed shape an operator can grep and a test can parse::

    consumer group <group> holds <topic>[0,3] <topic2>[1]
    consumer group <group> holds nothing

:data:`ASSIGNMENT_LINE` is that shape as a regular expression.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRebalanceListener, TopicPartition

log = logging.getLogger(__name__)

ASSIGNMENT_LINE = re.compile(
    r"consumer group (?P<group>\S+) holds "
    r"(?P<held>nothing|[^\s\[\]\"]+\[[0-9,]*\](?: [^\s\[\]\"]+\[[0-9,]*\])*)"
)
"""A line :class:`AssignmentLog` writes; ``held`` is read by :func:`parse_held`. It
matches inside a JSON log line too: ``held`` stops at the last ``topic[...]``."""


def describe_held(partitions: set[TopicPartition] | frozenset[TopicPartition]) -> str:
    """``topic[0,3] other[1]`` (sorted), or ``nothing``."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    if not by_topic:
        return "nothing"
    return " ".join(
        f"{topic}[{','.join(str(p) for p in sorted(ps))}]" for topic, ps in sorted(by_topic.items())
    )


def parse_held(held: str) -> frozenset[tuple[str, int]]:
    """The partitions a :func:`describe_held` text names."""
    if held.strip() == "nothing":
        return frozenset()
    found: set[tuple[str, int]] = set()
    for part in held.split():
        topic, _, numbers = part.partition("[")
        found.update((topic, int(n)) for n in numbers.rstrip("]").split(",") if n)
    return frozenset(found)


class AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs the member's partitions after every assignment of consumer group ``group``.

    ``on_revoked`` runs before partitions are taken away, while the consumer may
    still commit them (the consumer settles its in-flight records there).
    """

    def __init__(
        self,
        group: str,
        on_revoked: Callable[[list[TopicPartition]], Awaitable[None]] | None = None,
    ) -> None:
        self._group = group
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._on_revoked is not None and revoked:
            await self._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("consumer group %s holds %s", self._group, describe_held(set(assigned)))
