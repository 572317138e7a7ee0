"""The ``messaging`` fixture: the in-memory test broker or the real one, same tests."""

from __future__ import annotations

import uuid

import pytest

from harness.messaging import Harness, KafkaHarness, MemoryHarness
from stovepipe.messaging import KafkaSettings


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.broker)])
def messaging(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return MemoryHarness(
            KafkaSettings(
                bootstrap_servers="in-memory:9092",
                client_id="stovepipe-test",
                topic_prefix=f"m{uuid.uuid4().hex[:12]}.",
            )
        )
    settings: KafkaSettings = request.getfixturevalue("kafka_settings")
    return KafkaHarness(settings)
