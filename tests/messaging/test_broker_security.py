"""Kafka security on the wire: TLS, mTLS and SASL against the real (Tansu) broker.

Tansu 0.6.0 cannot serve TLS, so the TLS brokers here are Tansu behind a TLS
listener in this process (``harness.tls``); the Kafka protocol is
Tansu's. Tansu's ``--authentication`` offers SCRAM but can store no
credentials, so the SASL tests can only show refusals and that a SCRAM login
is attempted (see ``stovepipe.embedded.broker``); the mapping of a successful
login is covered by ``test_security_settings.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from harness.event_feed import events
from harness.messaging import Inbox, committed_offset, placed, process_message
from harness.tls import Pki, TlsBroker
from plugins.broker import settings_for_test
from stovepipe.config import load_config
from stovepipe.delays import (
    DEFAULT_TIERS_S,
    HEADER_NOT_BEFORE,
    HEADER_TARGET,
    DelayForwarder,
    tier_topic,
)
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.embedded import BrokerUnavailable, EmbeddedBroker
from stovepipe.messaging import (
    HOOK,
    PIPELINE_TOPICS,
    Bus,
    KafkaSecurity,
    KafkaSettings,
    ensure_topics,
    topic_partitions,
)
from stovepipe.runtime.broker_watch import EPOCH_TOPIC, watch_topics
from stovepipe.runtime.dead_letters import read_dead_letters, replay_dead_letter
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.registry import all_topics
from stovepipe.runtime.wiring import kafka_settings
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
PROCESS = "stovepipe.process"


async def _started(broker: TlsBroker | EmbeddedBroker) -> Any:
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start the Tansu broker for the tests: {exc}", pytrace=False)
    return broker


@pytest.fixture(scope="module")
async def tls_broker(
    kafka_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TlsBroker]:
    broker = TlsBroker(kafka_pki, log_path=tmp_path_factory.mktemp("tls") / "tansu.log")
    try:
        yield await _started(broker)
    finally:
        await broker.stop()


@pytest.fixture(scope="module")
async def mtls_broker(
    kafka_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TlsBroker]:
    log = tmp_path_factory.mktemp("mtls") / "tansu.log"
    broker = TlsBroker(kafka_pki, log_path=log, require_client_cert=True)
    try:
        yield await _started(broker)
    finally:
        await broker.stop()


@pytest.fixture(scope="module")
async def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("sasl") / "tansu.log"
    broker = EmbeddedBroker(log_path=log, authentication=True)
    try:
        yield await _started(broker)
    finally:
        await broker.stop()


@pytest.fixture(scope="module")
async def sasl_ssl_broker(
    kafka_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TlsBroker]:
    log = tmp_path_factory.mktemp("sasl-ssl") / "tansu.log"
    broker = TlsBroker(kafka_pki, log_path=log, require_client_cert=True, authentication=True)
    try:
        yield await _started(broker)
    finally:
        await broker.stop()


def _settings(bootstrap_servers: str, **security: Any) -> KafkaSettings:
    return replace(
        settings_for_test(bootstrap_servers, embedded=True), security=KafkaSecurity(**security)
    )


def _trusting(broker: TlsBroker, pki: Pki, **security: Any) -> KafkaSettings:
    return _settings(broker.bootstrap_servers, protocol="SSL", ca_file=str(pki.ca_file), **security)


def _with_client_cert(pki: Pki) -> dict[str, str]:
    return {"cert_file": str(pki.client_cert_file), "key_file": str(pki.client_key_file)}


async def _round_trip(settings: KafkaSettings) -> None:
    """Publish and consume one record through a Bus, and see its offset committed."""
    await ensure_topics(settings, PIPELINE_TOPICS)
    inbox = Inbox()
    bus = Bus(settings)
    bus.consumer.subscribe(PROCESS, inbox.handler, group="tls")
    async with bus:
        published = await bus.publish(PROCESS, process_message(1))
        [(payload, delivery)] = await inbox.wait_for(1)

        async def committed() -> bool:
            partition, offset = placed(published)
            return await committed_offset(settings, PROCESS, "tls", partition) == offset + 1

        await until(committed, what="the commit over TLS")
    assert payload == process_message(1)
    assert (delivery.partition, delivery.offset) == (published.partition, published.offset)


async def _refused(settings: KafkaSettings) -> None:
    """Refused where every process starts: creating its topics (``stovepipe dlq``: reading).

    Not through ``Bus.start``: FastStream does not close the producer it failed to
    start, which aiokafka reports as an unclosed-producer ResourceWarning.
    """
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await ensure_topics(settings, PIPELINE_TOPICS)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await read_dead_letters(settings)


async def _records(settings: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            found += [r for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


# TLS


async def test_a_client_that_trusts_the_ca_publishes_and_consumes_over_tls(
    tls_broker: TlsBroker, kafka_pki: Pki
) -> None:
    settings = _trusting(tls_broker, kafka_pki)
    await _round_trip(settings)
    partitions = await topic_partitions(settings, PIPELINE_TOPICS)
    assert set(partitions.values()) == {settings.partitions}


async def test_dead_letters_are_listed_and_replayed_over_tls(
    tls_broker: TlsBroker, kafka_pki: Pki
) -> None:
    settings = _trusting(tls_broker, kafka_pki)
    await ensure_topics(settings, all_topics())
    letter = topics_pb2.BuildMessage(request_id="request/q/3", queue="q")
    async with Bus(settings) as bus:
        await bus.publish_raw(
            settings.topic("stovepipe.build.dlq"),
            letter.SerializeToString(),
            key=b"request/q/3",
            headers={},
        )
    [found] = await read_dead_letters(settings, ["build"])
    assert (found.topic, found.request_id) == ("stovepipe.build.dlq", "request/q/3")
    assert await replay_dead_letter(settings, found) == "stovepipe.build"
    [replayed] = await _records(settings, settings.topic("stovepipe.build"))
    assert replayed.value == letter.SerializeToString()


async def test_the_event_feed_serves_a_checked_event_over_tls(
    tls_broker: TlsBroker, kafka_pki: Pki, tmp_path: Path
) -> None:
    settings = _trusting(tls_broker, kafka_pki)
    await ensure_topics(settings, [HOOK.name])
    url = f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    store = Store(engine)
    feed = EventFeed(settings, store)
    fact = ValidationFact(
        queue="tls/main",
        uri="uri-1",
        project="",
        degree=0.0,
        request_id="request/tls/main/1",
        origin=FactOrigin.BUILD,
        created_at=datetime.now(UTC),
    )
    event = topics_pb2.HookEvent(
        id="event-1",
        type="dev.stovepipe.verdict.recorded",
        subject="tls/main",
        data=topics_pb2.GreennessEventData(
            queue="tls/main",
            uri="uri-1",
            green=True,
            origin=types_pb2.FACT_ORIGIN_BUILD,
            request_id="request/tls/main/1",
            attempt=1,
        ),
    )
    try:
        await store.create_fact(fact)
        stream = events(feed)
        first = asyncio.ensure_future(anext(stream))
        await until(_is_set(feed), what="the feed positioned at the end")
        async with Bus(settings) as bus:
            await bus.publish(HOOK.name, event)
        served = await asyncio.wait_for(first, 30)
        assert isinstance(stream, AsyncGenerator)  # so it can be closed
        await stream.aclose()
    finally:
        await feed.close()
        await engine.dispose()
    assert (served.id, served.data.green, served.data.uri) == ("event-1", True, "uri-1")


_NO_STORE: Any = None
"""The feed never reaches storage when it cannot connect."""


def _is_set(feed: EventFeed) -> Any:
    async def positioned() -> bool:
        return feed._positioned.is_set()

    return positioned


async def test_the_delay_forwarder_and_the_topic_watch_work_over_tls(
    tls_broker: TlsBroker, kafka_pki: Pki
) -> None:
    settings = _trusting(tls_broker, kafka_pki)
    tiers = [settings.topic(tier_topic(t)) for t in DEFAULT_TIERS_S]
    target = settings.topic("stovepipe.record")
    await ensure_topics(settings, [*(tier_topic(t) for t in DEFAULT_TIERS_S), "stovepipe.record"])
    async with Bus(settings) as bus:
        await bus.publish_raw(
            settings.topic(tier_topic(1.0)),
            b"payload",
            key=b"request/q/1",
            headers={HEADER_TARGET: target, HEADER_NOT_BEFORE: "0"},
        )
    forwarder = DelayForwarder(settings, tiers, allowed_targets=frozenset({target}))
    running = asyncio.create_task(forwarder.run())
    try:

        async def forwarded() -> bool:
            return forwarder.forwarded == 1

        await until(forwarded, what="the tier record forwarded over TLS")
    finally:
        forwarder.stop()
        await asyncio.wait_for(running, 30)
    assert [r.value for r in await _records(settings, target)] == [b"payload"]

    await ensure_topics(settings, [EPOCH_TOPIC])
    lost: list[list[str]] = []
    watch = watch_topics(settings, ["stovepipe.never-created"], lost.append, interval_s=0.05)
    await asyncio.wait_for(watch, 30)
    assert lost == [[settings.topic("stovepipe.never-created")]]


async def test_a_plaintext_client_is_refused_by_the_tls_broker(tls_broker: TlsBroker) -> None:
    await _refused(_settings(tls_broker.bootstrap_servers))


async def test_an_event_feed_that_is_refused_ends_its_streams_with_the_error(
    tls_broker: TlsBroker,
) -> None:
    feed = EventFeed(_settings(tls_broker.bootstrap_servers), _NO_STORE)
    stream = events(feed)
    try:
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(anext(stream), 30)
    finally:
        assert isinstance(stream, AsyncGenerator)  # so it can be closed
        await stream.aclose()
        await feed.close()


async def test_a_client_that_trusts_another_ca_is_refused(
    tls_broker: TlsBroker, kafka_pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        tls_broker.bootstrap_servers, protocol="SSL", ca_file=str(kafka_pki.other_ca_file)
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        await _refused(settings)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


# mTLS


async def test_mtls_serves_a_client_with_a_certificate_from_the_ca(
    mtls_broker: TlsBroker, kafka_pki: Pki
) -> None:
    await _round_trip(_trusting(mtls_broker, kafka_pki, **_with_client_cert(kafka_pki)))


async def test_mtls_refuses_a_client_without_a_certificate(
    mtls_broker: TlsBroker, kafka_pki: Pki
) -> None:
    await _refused(_trusting(mtls_broker, kafka_pki))


# SASL


async def test_an_authenticating_broker_refuses_a_client_without_a_login(
    sasl_broker: EmbeddedBroker,
) -> None:
    await _refused(_settings(sasl_broker.bootstrap_servers))


async def test_tansu_offers_no_plain_login(sasl_broker: EmbeddedBroker) -> None:
    """Its SASL library is built without PLAIN: the handshake fails and the connection closes."""
    settings = _settings(
        sasl_broker.bootstrap_servers,
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="stovepipe",
        sasl_password="any",
    )
    await _refused(settings)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_scram_login_the_broker_does_not_know_is_refused(
    sasl_broker: EmbeddedBroker, mechanism: str
) -> None:
    """Tansu runs the SCRAM exchange and ends it with RFC 5802's ``e=unknown-user`` (its
    memory storage keeps no credentials); aiokafka reads that final message as if it
    carried the server signature and raises ``KeyError('v')``. Apache Kafka reports a
    failed login as a SaslAuthenticate error code instead."""
    settings = _settings(
        sasl_broker.bootstrap_servers,
        protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="stovepipe",
        sasl_password="not-known-to-the-broker",
    )
    with pytest.raises(KeyError, match=r"^'v'$"):
        await ensure_topics(settings, PIPELINE_TOPICS)


async def test_the_example_sasl_ssl_settings_reach_the_login_over_mtls(
    sasl_ssl_broker: TlsBroker, kafka_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stovepipe.example.yaml's commented SASL_SSL block, uncommented, with its files
    replaced by the test PKI's: the broker demands a client certificate, so reaching the
    SCRAM login proves every TLS key; the login is refused as above."""
    text = re.sub(
        r"^  # (security_protocol|ssl_\w+|sasl_\w+): ",
        r"  \1: ",
        (ROOT / "stovepipe.example.yaml").read_text(),
        flags=re.MULTILINE,
    )
    for name, path in {
        "/etc/stovepipe/kafka/ca.pem": kafka_pki.ca_file,
        "/etc/stovepipe/kafka/client.pem": kafka_pki.client_cert_file,
        "/etc/stovepipe/kafka/client.key": kafka_pki.client_key_file,
    }.items():
        assert name in text
        text = text.replace(name, str(path))
    config_file = tmp_path / "stovepipe.yaml"
    config_file.write_text(text)
    env = {"KAFKA_BOOTSTRAP_SERVERS": sasl_ssl_broker.bootstrap_servers}
    config = load_config(config_file, env=env)
    assert config.kafka.security_protocol == "SASL_SSL"
    monkeypatch.setenv("STOVEPIPE_KAFKA_PASSWORD", "not-known-to-the-broker")
    settings = kafka_settings(config, "stovepipe-test")
    with pytest.raises(KeyError, match=r"^'v'$"):
        await ensure_topics(settings, PIPELINE_TOPICS)
    without_certificate = replace(
        settings, security=replace(settings.security, cert_file=None, key_file=None)
    )
    await _refused(without_certificate)
