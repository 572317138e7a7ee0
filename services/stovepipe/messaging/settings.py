"""Kafka settings, built by the composition root from configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    client_id: str = "stovepipe"
    topic_prefix: str = ""
    partitions: int = 3
    replication_factor: int = 1
    fetch_max_wait_ms: int = 20
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    graceful_timeout_s: float = 30.0
    max_message_bytes: int = 1024 * 1024
    group_prefix: str = "stovepipe"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.topic_prefix}{self.group_prefix}-{name}"
