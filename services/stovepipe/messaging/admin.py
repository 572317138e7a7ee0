"""Create the topics a process needs, with the configured partition count.

Topics are created explicitly, before anything is produced: a broker that
auto-creates topics on first produce (Tansu and Kafka's default) would give
them one partition, and one partition means one consumer per group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stovepipe.messaging.settings import KafkaSettings
from stovepipe.messaging.topics import TopicSpec

_POLL_S = 0.05


class TopicCreationFailed(RuntimeError):
    """The cluster refused to create a topic (other than because it already exists)."""


@asynccontextmanager
async def _admin(settings: KafkaSettings) -> AsyncIterator[Any]:
    client = AIOKafkaAdminClient(
        **settings.client_kwargs(),
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        await client.start()
        yield client
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.close(), settings.close_timeout_s)


def _logical_name(topic: str | TopicSpec) -> str:
    return topic if isinstance(topic, str) else topic.name


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str | TopicSpec]) -> list[str]:
    """Create the missing (prefixed) topics; return the physical names it created.

    Existing topics are left as they are, whatever their partition count.
    Returns once every topic is visible in the cluster metadata, so a produce
    right after it cannot auto-create a one-partition topic instead.
    """
    wanted = list(dict.fromkeys(settings.topic(_logical_name(t)) for t in topics))
    if not wanted:
        return []
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(name, settings.partitions, settings.replication_factor)
                    for name in missing
                ]
            )
            refused: list[str] = []
            for name, code, text in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif not issubclass(for_code(code), TopicAlreadyExistsError):
                    refused.append(f"{name}: {for_code(code).__name__} {text or ''}".strip())
            if refused:
                raise TopicCreationFailed("; ".join(refused))
        await _until_visible(admin, wanted, settings.request_timeout_ms / 1000)
    return created


async def _until_visible(admin: Any, names: list[str], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        pending = sorted(set(names) - set(await admin.list_topics()))
        if not pending:
            return
        if loop.time() >= deadline:
            raise TopicCreationFailed(f"not visible after {timeout_s:.0f}s: {', '.join(pending)}")
        await asyncio.sleep(_POLL_S)


async def topic_partitions(
    settings: KafkaSettings, topics: Iterable[str | TopicSpec]
) -> dict[str, int]:
    """The partition count of each existing (prefixed) topic, by physical name.

    Only topics the cluster lists are described: describing an unknown topic is
    a metadata request, and a broker that auto-creates topics (Tansu does)
    would create it as a side effect.
    """
    names = [settings.topic(_logical_name(t)) for t in topics]
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        present = [name for name in names if name in existing]
        described = await admin.describe_topics(present) if present else []
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
