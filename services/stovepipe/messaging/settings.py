"""Kafka settings, built once by whoever composes the process.

Stages and the messaging layer never read environment variables or global
configuration: the composition root (or a test fixture) builds one
:class:`KafkaSettings` and hands it down.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiokafka.helpers import create_ssl_context

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_MAX_TOPIC_NAME = 249

DEFAULT_MAX_IN_FLIGHT = 16
"""Records of one partition a consumer holds between fetch and commit, unless a
stage says otherwise (``workers.<stage>.max_in_flight``). Enough to overlap the
waits of a stage's handlers (extension calls, database commits) on a loaded
two-core machine, few enough that a slow record holds up little behind it."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurityError(ValueError):
    """The security settings cannot be used: a file is missing, unreadable or not PEM."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How every client verifies the cluster and proves who it is.

    ``protocol`` is Kafka's ``security.protocol``. With SSL the broker's
    certificate is checked against ``ca_file`` (the system trust store when it
    is ``None``) and must name the host the client dialled; ``cert_file`` and
    ``key_file`` (an unencrypted PEM key) add a client certificate for mTLS.
    With SASL the client logs in as ``sasl_username`` with ``sasl_mechanism``.
    The password is resolved by the composition root and never shown by ``repr``.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in get_args(SecurityProtocol):
            raise ValueError(
                f"security protocol {self.protocol!r} is not one of "
                f"{', '.join(get_args(SecurityProtocol))}"
            )
        files = (self.ca_file, self.cert_file, self.key_file)
        if not self.uses_ssl and any(f is not None for f in files):
            raise ValueError(f"CA and client certificate files need SSL, not {self.protocol}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        sasl = (self.sasl_mechanism, self.sasl_username, self.sasl_password)
        if not self.uses_sasl:
            if any(v is not None for v in sasl):
                raise ValueError(
                    f"SASL settings need SASL_PLAINTEXT or SASL_SSL, not {self.protocol}"
                )
            return
        if self.sasl_mechanism not in get_args(SaslMechanism):
            raise ValueError(
                f"{self.protocol} needs a SASL mechanism, "
                f"one of {', '.join(get_args(SaslMechanism))}"
            )
        if not self.sasl_username or not self.sasl_password:
            raise ValueError(f"{self.protocol} needs a SASL user name and password")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def client_kwargs(self) -> dict[str, Any]:
        """The security part of :meth:`KafkaSettings.client_kwargs`."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A new client context, with the files read now (a rotated certificate is used by
        the next client built). Raises :class:`KafkaSecurityError` naming the file at fault."""
        named = (
            ("CA file", self.ca_file),
            ("client certificate", self.cert_file),
            ("client key", self.key_file),
        )
        for what, path in named:
            if path is not None and not os.path.isfile(path):
                raise KafkaSecurityError(f"Kafka TLS: the {what} {path} does not exist")
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
            )
        except (ssl.SSLError, OSError) as exc:
            given = ", ".join(f"{what} {path}" for what, path in named if path is not None)
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise KafkaSecurityError(f"Kafka TLS: cannot load {given}: {reason}") from None
        return context


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the cluster and how producers and consumers behave.

    ``topic_prefix`` namespaces every physical topic *and* consumer group, so
    several deployments (or tests) can share one cluster without seeing each
    other's records. ``fetch_max_wait_ms`` is small on purpose: Tansu answers a
    waiting fetch only when the wait runs out, so this is the latency floor of
    every hop while there is work; after ``idle_after_s`` without a record a
    consumer waits ``idle_fetch_max_wait_ms`` instead (:mod:`.pacing`), so an
    idle installation does not ask the broker 50 times a second per consumer
    (0, the default here, or anything not above ``fetch_max_wait_ms`` turns
    that off; the configuration file's default turns it on).
    ``graceful_timeout_s`` must cover the longest handler; a stop
    waits that long for in-flight handlers and then ``close_timeout_s`` more for
    the clients to close, and no longer. ``max_in_flight`` bounds the records of
    one partition between fetch and commit (:mod:`.inflight`). ``security`` is how clients reach the
    cluster (:meth:`client_kwargs`).
    """

    bootstrap_servers: str
    client_id: str = "stovepipe"
    topic_prefix: str = ""
    group_prefix: str = "stovepipe"
    partitions: int = 3
    replication_factor: int = 1
    fetch_max_wait_ms: int = 20
    idle_fetch_max_wait_ms: int = 0
    idle_after_s: float = 30.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    graceful_timeout_s: float = 30.0
    close_timeout_s: float = 10.0
    max_message_bytes: int = 1024 * 1024
    redelivery_pause_ms: int = 1_000
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

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
            "max_in_flight": self.max_in_flight,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        non_negative = {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "idle_fetch_max_wait_ms": self.idle_fetch_max_wait_ms,
            "idle_after_s": self.idle_after_s,
            "graceful_timeout_s": self.graceful_timeout_s,
            "close_timeout_s": self.close_timeout_s,
            "redelivery_pause_ms": self.redelivery_pause_ms,
        }
        for name, number in non_negative.items():
            if number < 0:
                raise ValueError(f"{name} must not be negative, not {number}")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")

    def client_kwargs(self) -> dict[str, Any]:
        """Where the cluster is and how to reach it, as aiokafka keyword arguments.

        ``bootstrap_servers`` and ``security_protocol`` always; ``ssl_context`` with
        SSL; ``sasl_mechanism``, ``sasl_plain_username`` and ``sasl_plain_password``
        with SASL. Every Kafka client Stovepipe builds (consumers, producers, admin
        clients, the FastStream broker) is built from this, so none can connect
        without the configured security.
        """
        return {"bootstrap_servers": self.bootstrap_servers, **self.security.client_kwargs()}

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
