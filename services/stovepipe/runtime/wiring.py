"""The composition root: the only place that builds engines, clients and brokers.

Everything a process needs is assembled here from the configuration and
handed to the stages; stages never read settings or the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from stovepipe.config import StovepipeConfig, resolve_secret
from stovepipe.messaging import KafkaSecurity, KafkaSettings
from stovepipe.runtime.extension_registry import ExtensionRegistry
from stovepipe.stages import (
    BuildSignalPoller,
    BuildTrigger,
    HeadIngester,
    RequestAdmitter,
    VerdictRecorder,
)
from stovepipe.stages.analyze import ProjectAnalyzer
from stovepipe.stages.ports import (
    Clock,
    DelayedPublisher,
    Extensions,
    Publisher,
    utc_now,
)
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.stages.revalidate import Revalidator
from stovepipe.stages.sweep import StaleRequestSweeper
from stovepipe.storage import Store, create_engine


@dataclass
class Collaborators:
    """What every stage is built from."""

    config: StovepipeConfig
    store: Store
    extensions: Extensions
    publisher: Publisher
    delayed: DelayedPublisher
    clock: Clock = utc_now

    def ingester(self) -> HeadIngester:
        return HeadIngester(self.store, self.config, self.extensions, self.publisher, self.clock)

    def revalidator(self) -> Revalidator:
        return Revalidator(self.store, self.config, self.extensions, self.publisher, self.clock)

    def admitter(self) -> RequestAdmitter:
        return RequestAdmitter(self.store, self.config, self.extensions, self.publisher, self.clock)

    def build_trigger(self) -> BuildTrigger:
        return BuildTrigger(self.store, self.config, self.extensions, self.publisher, self.clock)

    def build_signal_poller(self) -> BuildSignalPoller:
        return BuildSignalPoller(
            self.store,
            self.config,
            self.extensions,
            self.publisher,
            self.delayed,
            self.clock,
            poll_interval_s=self.config.workers.buildsignal_poll_interval_seconds,
            sweeper_stale_after_s=self.config.workers.sweeper_stale_after_seconds,
        )

    def sweeper(self) -> StaleRequestSweeper:
        return StaleRequestSweeper(
            self.store, self.config, self.extensions, self.publisher, self.clock
        )

    def verdict_recorder(self) -> VerdictRecorder:
        return VerdictRecorder(self.store, self.config, self.extensions, self.publisher, self.clock)

    def project_analyzer(self) -> ProjectAnalyzer:
        return ProjectAnalyzer(self.store, self.config, self.extensions, self.publisher, self.clock)

    def dead_letter_reconciler(self) -> DeadLetterReconciler:
        return DeadLetterReconciler(
            self.store, self.config, self.extensions, self.publisher, self.clock
        )


def kafka_settings(config: StovepipeConfig, client_id: str) -> KafkaSettings:
    """The messaging settings of one process, from the ``kafka:`` section.

    The SASL password is read here, from the variable or file the section names
    (``SecretUnavailable`` naming it otherwise), and the TLS files are loaded once
    (``KafkaSecurityError`` naming the file otherwise), so a process with unusable
    security settings fails as it starts rather than at its first connection.
    """
    k = config.kafka
    if not k.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is empty; `stovepipe up` fills it in for you")
    security = KafkaSecurity(
        protocol=k.security_protocol,
        ca_file=k.ssl_ca_file,
        cert_file=k.ssl_cert_file,
        key_file=k.ssl_key_file,
        sasl_mechanism=k.sasl_mechanism,
        sasl_username=k.sasl_username,
        sasl_password=None if (ref := k.secret_ref()) is None else resolve_secret(ref),
    )
    if security.uses_ssl:
        security.ssl_context()
    return KafkaSettings(
        bootstrap_servers=k.bootstrap_servers,
        client_id=client_id,
        topic_prefix=k.topic_prefix,
        partitions=k.partitions,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        idle_fetch_max_wait_ms=k.idle_fetch_max_wait_ms,
        idle_after_s=k.idle_after_seconds,
        max_message_bytes=k.max_message_bytes,
        group_prefix=k.group_prefix,
        session_timeout_ms=k.session_timeout_ms,
        heartbeat_interval_ms=k.heartbeat_interval_ms,
        graceful_timeout_s=k.graceful_timeout_seconds,
        redelivery_pause_ms=k.redelivery_pause_ms,
        security=security,
    )


@asynccontextmanager
async def open_store(config: StovepipeConfig) -> AsyncIterator[Store]:
    engine = create_engine(config.storage.url, pool_size=config.storage.pool_size)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_extensions(config: StovepipeConfig) -> AsyncIterator[ExtensionRegistry]:
    registry = ExtensionRegistry(config)
    try:
        yield registry
    finally:
        await registry.close()
