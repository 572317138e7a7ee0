"""What stages need from the outside world, as narrow protocols.

Stages receive these from the composition root (``stovepipe.wiring``) and
never build clients, read settings or touch the environment themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from google.protobuf.message import Message

from stovepipe.config import QueueConfig
from stovepipe.extensions.buildrunner.client import BuildRunner
from stovepipe.extensions.projectmapper import ProjectMapper
from stovepipe.extensions.sourcecontrol.client import QueueSource, SourceControl

Clock = Callable[[], datetime]
Handler = Callable[[Any], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Publisher(Protocol):
    """Publishes one payload to one topic (the key is derived from the topic)."""

    async def publish(self, topic: str, message: Message) -> None: ...


class DelayedPublisher(Protocol):
    """Delivers a payload to a topic no earlier than ``delay_s`` from now."""

    async def publish_after(self, topic: str, message: Message, delay_s: float) -> None: ...


class Extensions(Protocol):
    """Per-Queue resolution of the extension that serves it."""

    def source_control(self, queue: QueueConfig) -> SourceControl: ...

    def build_runner(self, queue: QueueConfig) -> BuildRunner: ...

    def project_mapper(self, queue: QueueConfig) -> ProjectMapper: ...


class QueueDirectory(Protocol):
    """The configured Queues; raises ``UnknownQueue`` for a name it does not know."""

    def queue(self, name: str) -> QueueConfig: ...


def queue_source(queue: QueueConfig) -> QueueSource:
    return QueueSource(queue=queue.name, repository=queue.source.repository, ref=queue.source.ref)
