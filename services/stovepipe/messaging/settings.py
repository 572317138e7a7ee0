"""Kafka settings, built once by whoever composes the process.

Stages and the messaging layer never read environment variables or global
configuration: the composition root (or a test fixture) builds one
:class:`KafkaSettings` and hands it down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_MAX_TOPIC_NAME = 249


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the cluster and how producers and consumers behave.

    ``topic_prefix`` namespaces every physical topic *and* consumer group, so
    several deployments (or tests) can share one cluster without seeing each
    other's records. ``fetch_max_wait_ms`` is small on purpose: Tansu answers a
    waiting fetch only when the wait runs out, so this is the latency floor of
    every hop. ``graceful_timeout_s`` must cover the longest handler; a stop
    waits that long for in-flight handlers and then ``close_timeout_s`` more for
    the clients to close, and no longer.
    """

    bootstrap_servers: str
    client_id: str = "stovepipe"
    topic_prefix: str = ""
    group_prefix: str = "stovepipe"
    partitions: int = 3
    replication_factor: int = 1
    fetch_max_wait_ms: int = 20
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    graceful_timeout_s: float = 30.0
    close_timeout_s: float = 10.0
    max_message_bytes: int = 1024 * 1024
    redelivery_pause_ms: int = 1_000

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ValueError("bootstrap_servers is empty")
        if not _TOPIC_CHARS.fullmatch(self.topic_prefix):
            raise ValueError(
                f"topic_prefix {self.topic_prefix!r} may only use letters, digits, '.', '_', '-'"
            )
        positive = {
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "request_timeout_ms": self.request_timeout_ms,
            "max_message_bytes": self.max_message_bytes,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        non_negative = {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "graceful_timeout_s": self.graceful_timeout_s,
            "close_timeout_s": self.close_timeout_s,
            "redelivery_pause_ms": self.redelivery_pause_ms,
        }
        for name, number in non_negative.items():
            if number < 0:
                raise ValueError(f"{name} must not be negative, not {number}")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (``stovepipe.process`` …)."""
        physical = f"{self.topic_prefix}{name}"
        if len(physical) > _MAX_TOPIC_NAME:
            raise ValueError(f"topic name {physical!r} is longer than {_MAX_TOPIC_NAME}")
        return physical

    def group(self, name: str) -> str:
        """The consumer group id for a logical group name (``process``, ``reconcile-build`` …)."""
        return f"{self.topic_prefix}{self.group_prefix}-{name}"

    @property
    def stop_timeout_s(self) -> float:
        """The most a stop may take: drain handlers, then close clients."""
        return self.graceful_timeout_s + self.close_timeout_s
