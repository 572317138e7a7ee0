"""The service-wide sections of ``stovepipe.yaml``: storage, kafka, api, extensions, workers.

Every setting here may also come from the environment (see ``stovepipe.config.env``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from stovepipe.config.base import ConfigModel, raise_problems, require_unique_names
from stovepipe.config.fields import (
    Address,
    EnvName,
    ExtensionName,
    NonBlank,
    PositiveSeconds,
    check_bootstrap_servers,
    check_kafka_topic_part,
)
from stovepipe.config.redaction import UrlWithCredentials
from stovepipe.config.secrets import SecretRef

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.stovepipe/stovepipe.db"
DEFAULT_API_LISTEN = "127.0.0.1:50051"
_DATABASE_SCHEME = re.compile(r"^(?P<backend>[A-Za-z0-9]+)(?:\+[A-Za-z0-9_]+)?://")
_BACKENDS = ("sqlite", "postgresql", "postgres")


def _check_database_url(value: str) -> str:
    """Only the scheme is checked, and only the scheme is echoed: the rest may hold a password."""
    match = _DATABASE_SCHEME.match(value)
    if match is None:
        raise ValueError(
            "must be a database URL such as postgresql+asyncpg://host/db "
            "or sqlite+aiosqlite:///path/stovepipe.db"
        )
    if match["backend"] not in _BACKENDS:
        raise ValueError(
            f"unsupported database {match['backend']!r}; use PostgreSQL "
            "(postgresql+asyncpg://) or SQLite (sqlite+aiosqlite:///)"
        )
    return value


class StorageConfig(ConfigModel):
    """Where state lives: SQLite (the embedded default) or PostgreSQL."""

    url: Annotated[UrlWithCredentials, AfterValidator(_check_database_url)] = DEFAULT_DATABASE_URL


class KafkaConfig(ConfigModel):
    """The broker. Empty ``bootstrap_servers`` means ``stovepipe up`` starts an embedded one."""

    bootstrap_servers: Annotated[str, AfterValidator(check_bootstrap_servers)] = ""
    topic_prefix: Annotated[str, AfterValidator(check_kafka_topic_part)] = ""
    partitions: Annotated[int, Field(ge=1)] = 3
    fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 20
    group_prefix: Annotated[NonBlank, AfterValidator(check_kafka_topic_part)] = "stovepipe"
    max_message_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    session_timeout_ms: Annotated[int, Field(ge=1_000, le=300_000)] = 10_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = 1_000
    graceful_timeout_seconds: Annotated[float, Field(ge=0, le=3_600)] = 30.0
    redelivery_pause_ms: Annotated[int, Field(ge=0, le=600_000)] = 1_000

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaConfig:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        return self

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _accept_a_list(cls, value: object) -> object:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value


class TokenConfig(ConfigModel):
    """One API caller: a name, a role, and where its secret token lives (never the token)."""

    literal_secret_keys = {
        "token": "a literal token is not allowed in the file; name the environment variable "
        "that holds it with token_env, or a file with token_file",
    }

    name: NonBlank
    role: Literal["ingest", "read", "admin"]
    token_env: EnvName | None = None
    token_file: NonBlank | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenConfig:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env or token_file")
        return self

    def secret_ref(self) -> SecretRef:
        return SecretRef(f"api token {self.name!r}", env=self.token_env, file=self.token_file)


class TlsConfig(ConfigModel):
    """Serve the API over TLS with this certificate chain and private key (PEM files).

    With ``client_ca_file`` (PEM bundle) every client must present a certificate
    signed by one of those CAs (mutual TLS).
    """

    cert_file: NonBlank
    key_file: NonBlank
    client_ca_file: NonBlank | None = None


class ApiConfig(ConfigModel):
    """The gRPC API. Without tokens every call is allowed: keep it on loopback then."""

    listen: Address = DEFAULT_API_LISTEN
    tokens: tuple[TokenConfig, ...] = ()
    tls: TlsConfig | None = None
    allow_insecure: bool = False
    """Serve tokens over plaintext on a non-loopback address anyway (refused otherwise)."""

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: tuple[TokenConfig, ...]) -> tuple[TokenConfig, ...]:
        require_unique_names(cls.__name__, tokens, "token", "tokens")
        return tokens


class Endpoint(ConfigModel):
    """Where one extension server listens. Omit ``address`` to let ``stovepipe up`` start it."""

    address: Address | None = None

    @field_validator("address", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


ExtensionMap = Mapping[ExtensionName, Endpoint]


class ExtensionsConfig(ConfigModel):
    """Named extension endpoints per contract; Queues refer to them by name.

    Declaring a kind replaces its default: with ``sourcecontrol: {github: ...}`` there
    is no ``git`` unless it is listed too.
    """

    sourcecontrol: ExtensionMap = Field(default_factory=lambda: {"git": Endpoint()})
    buildrunner: ExtensionMap = Field(default_factory=lambda: {"local": Endpoint()})
    hooks: ExtensionMap = Field(default_factory=dict)
    projectmapper: ExtensionMap = Field(default_factory=dict)


class StageConfig(ConfigModel):
    """Retry policy of one stage: a retryable failure comes back after
    ``min(backoff_max_seconds, backoff_initial_seconds * 2**(attempt-1))`` until
    ``max_attempts``, then goes to the stage's dead-letter topic."""

    max_attempts: Annotated[int, Field(ge=1)] = 8
    backoff_initial_seconds: PositiveSeconds = 1.0
    backoff_max_seconds: PositiveSeconds = 120.0

    @model_validator(mode="after")
    def _ordered(self) -> StageConfig:
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise_problems(
                type(self).__name__,
                None,
                [(("backoff_initial_seconds",), "must not exceed backoff_max_seconds")],
            )
        return self


class WorkersConfig(ConfigModel):
    """Per-stage retry policies plus the two timers of the pipeline."""

    process: StageConfig = StageConfig()
    build: StageConfig = StageConfig()
    buildsignal: StageConfig = StageConfig()
    record: StageConfig = StageConfig()
    buildsignal_poll_interval_seconds: PositiveSeconds = 1.0
    sweeper_stale_after_seconds: PositiveSeconds = 300.0
