"""The service-wide sections of ``stovepipe.yaml``: storage, kafka, api, extensions, workers.

Every setting here may also come from the environment (see ``stovepipe.config.env``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from stovepipe.config.base import ConfigModel, Loc, raise_problems, require_unique_names
from stovepipe.config.fields import (
    Address,
    EnvName,
    ExtensionName,
    NonBlank,
    PositiveSeconds,
    check_bootstrap_servers,
    check_kafka_topic_part,
    check_not_blank,
)
from stovepipe.config.secrets import SecretRef
from stovepipe.redaction import redact_url

if TYPE_CHECKING:
    from stovepipe.failures.policy import RetryPolicy

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
    """Where state lives: SQLite (the embedded default) or PostgreSQL.

    ``url`` may carry a password (from ``STOVEPIPE_DATABASE_URL``): it is masked in
    ``repr`` and in ``redacted()``, and kept in ``model_dump()`` for the code that connects.
    """

    url: Annotated[str, AfterValidator(_check_database_url)] = DEFAULT_DATABASE_URL
    pool_size: Annotated[int, Field(ge=1, le=1000)] = 20
    """PostgreSQL connections each process keeps: how many database calls it runs at once."""
    build_log_retention_days: Annotated[float, Field(gt=0, le=3650)] = 14.0
    """How long the kept logs of failed targets (``stovepipe logs``) stay."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", redact_url(self.url)
        yield "pool_size", self.pool_size

    @field_serializer("url")
    def _masked_when_redacting(self, url: str, info: SerializationInfo) -> str:
        context = info.context
        return redact_url(url) if isinstance(context, dict) and context.get("redact") else url


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_KAFKA_SSL_KEYS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
_KAFKA_SASL_KEYS = ("sasl_mechanism", "sasl_username", "sasl_password_env", "sasl_password_file")


def _absolute_path(value: str) -> str:
    """``~`` expanded; relative paths are refused rather than guessed at (unlike the
    ``api`` files, the loader does not resolve these against the file's directory)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError("must be an absolute path (starting with / or ~/)")
    return str(path)


KafkaFile = Annotated[str, AfterValidator(check_not_blank), AfterValidator(_absolute_path)]


class KafkaConfig(ConfigModel):
    """The broker. Empty ``bootstrap_servers`` means ``stovepipe up`` starts an embedded one.

    ``security_protocol`` says how every client reaches the cluster. With SSL the
    broker is verified against ``ssl_ca_file`` (the system trust store when it is
    omitted), and ``ssl_cert_file`` + ``ssl_key_file`` add a client certificate
    (mTLS). SASL needs a mechanism, a user name and the password *by reference*.
    Files are checked when a client is built, not here: a command that never talks
    to Kafka must not fail because a client certificate is not mounted on its host.
    """

    refused_keys = {
        "sasl_password": "a literal password is not allowed in the file; name the environment "
        "variable that holds it with sasl_password_env, or a file with sasl_password_file",
    }

    bootstrap_servers: Annotated[str, AfterValidator(check_bootstrap_servers)] = ""
    topic_prefix: Annotated[str, AfterValidator(check_kafka_topic_part)] = ""
    partitions: Annotated[int, Field(ge=1)] = 3
    fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 20
    idle_fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 2_000
    idle_after_seconds: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    group_prefix: Annotated[NonBlank, AfterValidator(check_kafka_topic_part)] = "stovepipe"
    max_message_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    session_timeout_ms: Annotated[int, Field(ge=1_000, le=300_000)] = 10_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = 3_000
    graceful_timeout_seconds: Annotated[float, Field(ge=0, le=3_600)] = 30.0
    redelivery_pause_ms: Annotated[int, Field(ge=0, le=600_000)] = 1_000
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    ssl_ca_file: KafkaFile | None = None
    ssl_cert_file: KafkaFile | None = None
    ssl_key_file: KafkaFile | None = None
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_username: NonBlank | None = None
    sasl_password_env: EnvName | None = None
    sasl_password_file: KafkaFile | None = None

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaConfig:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        return self

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaConfig:
        protocol = self.security_protocol
        uses_ssl = protocol in ("SSL", "SASL_SSL")
        uses_sasl = protocol.startswith("SASL_")
        problems: list[tuple[Loc, str]] = []
        if protocol != "PLAINTEXT" and not self.bootstrap_servers:
            problems.append(
                (
                    ("security_protocol",),
                    f"{protocol} needs bootstrap_servers: the embedded broker that "
                    "`stovepipe up` starts when bootstrap_servers is empty speaks PLAINTEXT only",
                )
            )
        unused = (
            (_KAFKA_SSL_KEYS, uses_ssl, "SSL or SASL_SSL"),
            (_KAFKA_SASL_KEYS, uses_sasl, "SASL_PLAINTEXT or SASL_SSL"),
        )
        for keys, used, protocols in unused:
            problems.extend(
                ((key,), f"is only used with security_protocol {protocols} (it is {protocol})")
                for key in keys
                if not used and getattr(self, key) is not None
            )
        if uses_ssl and (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            missing = "ssl_key_file" if self.ssl_key_file is None else "ssl_cert_file"
            problems.append(
                ((missing,), "a client certificate needs both ssl_cert_file and ssl_key_file")
            )
        if uses_sasl:
            mechanisms = ", ".join(get_args(KafkaSaslMechanism))
            if self.sasl_mechanism is None:
                problems.append(
                    (("sasl_mechanism",), f"is required with {protocol} (one of {mechanisms})")
                )
            if self.sasl_username is None:
                problems.append((("sasl_username",), f"is required with {protocol}"))
            if (self.sasl_password_env is None) == (self.sasl_password_file is None):
                problems.append(
                    (
                        ("sasl_password_env",),
                        f"{protocol} needs exactly one of sasl_password_env or sasl_password_file",
                    )
                )
        if problems:
            raise_problems(type(self).__name__, None, problems)
        return self

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _accept_a_list(cls, value: object) -> object:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value

    def secret_ref(self) -> SecretRef | None:
        """Where the SASL password lives; ``None`` without SASL."""
        if self.sasl_password_env is None and self.sasl_password_file is None:
            return None
        return SecretRef(
            "kafka.sasl_password", env=self.sasl_password_env, file=self.sasl_password_file
        )


class TokenConfig(ConfigModel):
    """One API caller: a name, a role, and where its secret token lives (never the token)."""

    refused_keys = {
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
    max_event_streams: Annotated[int, Field(ge=1, le=100_000)] = 256
    """Open ``WatchEvents`` streams per API process; more answer RESOURCE_EXHAUSTED."""
    max_event_streams_per_caller: Annotated[int, Field(ge=1, le=100_000)] = 32
    """Open ``WatchEvents`` streams per caller (token, or host without tokens)."""
    keepalive_seconds: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    """How often the server pings an idle connection to find a peer that vanished."""
    max_connection_age_seconds: Annotated[float, Field(ge=0, le=604_800)] = 3600.0
    """A connection older than this is asked to reconnect (0: never)."""
    max_connection_age_grace_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    """How long calls in flight may finish after that request."""
    gate_cache_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    """How old a cached last-green bookmark may be when served (0: read storage every call).
    It is served only while the event feed is caught up (``stovepipe.api.gate_cache``)."""
    branch_head_max_age_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    """How old the branch head behind a plain ``GetLastGreen``'s ``reachable`` may be
    (``on_branch`` always resolves it for the call)."""

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: tuple[TokenConfig, ...]) -> tuple[TokenConfig, ...]:
        require_unique_names(cls.__name__, tokens, "token", "tokens")
        return tokens


class Endpoint(ConfigModel):
    """Where one extension server listens and how core proves who it is to it.

    Omit ``address`` to let ``stovepipe up`` start the server. ``token_env`` or
    ``token_file`` names the bearer token the server expects (never the token);
    ``ca_file`` (the CA that signed the server's certificate) turns TLS on, and
    ``cert_file`` with ``key_file`` present a client certificate (mutual TLS).
    Paths must be absolute: they are read by whichever process opens the channel.
    """

    refused_keys = {
        "token": "a literal token is not allowed in the file; name the environment variable "
        "that holds it with token_env, or a file with token_file",
    }

    address: Address | None = None
    token_env: EnvName | None = None
    token_file: NonBlank | None = None
    ca_file: NonBlank | None = None
    cert_file: NonBlank | None = None
    key_file: NonBlank | None = None

    @field_validator("address", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("token_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not PurePath(value).is_absolute():
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Endpoint:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("give at most one of token_env or token_file")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate)")
        return self

    def secret_ref(self) -> SecretRef | None:
        """Where the bearer token lives; ``None`` when the server expects none."""
        if self.token_env is None and self.token_file is None:
            return None
        return SecretRef("extension token", env=self.token_env, file=self.token_file)


DEFAULT_CONSOLE_LISTEN = "127.0.0.1:8080"


class ConsoleLoginToken(ConfigModel):
    """One person's (or team's) read-only console login: a name and where its token lives."""

    refused_keys = TokenConfig.refused_keys

    name: NonBlank
    token_env: EnvName | None = None
    token_file: NonBlank | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ConsoleLoginToken:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env or token_file")
        return self

    def secret_ref(self) -> SecretRef:
        return SecretRef(f"console login {self.name!r}", env=self.token_env, file=self.token_file)


class ConsoleConfig(ConfigModel):
    """The read-only web console (``stovepipe console``), a client of the API.

    ``api`` says how the console reaches the API (``address`` defaults to
    ``api.listen``; its token should have the ``read`` role). ``tls`` defaults
    to ``api.tls``. With ``login_tokens`` people sign in with one of them; with
    ``proxy_user_header`` a reverse proxy that authenticated the user names them
    in that header (the console must then be reachable only through the proxy).
    ``admin_token_env`` / ``admin_token_file`` name an ``admin`` API token and
    enable the one write action, re-validation, behind a confirmation.
    """

    refused_keys = {
        "admin_token": "a literal token is not allowed in the file; name the environment "
        "variable that holds it with admin_token_env, or a file with admin_token_file",
    }

    listen: Address = DEFAULT_CONSOLE_LISTEN
    api: Endpoint = Field(default_factory=Endpoint)
    tls: TlsConfig | None = None
    allow_insecure: bool = False
    """Accept login tokens over plaintext on a non-loopback address anyway."""
    login_tokens: tuple[ConsoleLoginToken, ...] = ()
    proxy_user_header: NonBlank | None = None
    admin_token_env: EnvName | None = None
    admin_token_file: NonBlank | None = None
    page_size: Annotated[int, Field(ge=10, le=500)] = 50

    @field_validator("login_tokens")
    @classmethod
    def _unique_names(cls, tokens: tuple[ConsoleLoginToken, ...]) -> tuple[ConsoleLoginToken, ...]:
        require_unique_names(cls.__name__, tokens, "login token", "login_tokens")
        return tokens

    @model_validator(mode="after")
    def _one_admin_source(self) -> ConsoleConfig:
        if self.admin_token_env is not None and self.admin_token_file is not None:
            raise ValueError("give at most one of admin_token_env or admin_token_file")
        return self

    def admin_secret_ref(self) -> SecretRef | None:
        if self.admin_token_env is None and self.admin_token_file is None:
            return None
        return SecretRef(
            "console admin token", env=self.admin_token_env, file=self.admin_token_file
        )


ExtensionMap = Mapping[ExtensionName, Endpoint]

REFERENCE_HOOK_KINDS = ("webhook", "kafka", "log")


class ExtensionsConfig(ConfigModel):
    """Named extension endpoints per contract; Queues refer to them by name.

    Declaring a kind replaces its default: with ``sourcecontrol: {github: ...}`` there
    is no ``git`` unless it is listed too.
    """

    sourcecontrol: ExtensionMap = Field(default_factory=lambda: {"git": Endpoint()})
    buildrunner: ExtensionMap = Field(default_factory=lambda: {"local": Endpoint()})
    hooks: ExtensionMap = Field(
        default_factory=lambda: {name: Endpoint() for name in REFERENCE_HOOK_KINDS}
    )
    """HooksService servers by kind; ``stovepipe up`` serves the reference kinds
    (``webhook``, ``kafka``, ``log``) from one ``stovepipe ext hooks`` server."""
    projectmapper: ExtensionMap = Field(default_factory=lambda: {"config": Endpoint()})


MAX_DELAY_S = 120.0
"""The longest delay tier (``stovepipe.delays.DEFAULT_TIERS_S``): a delay beyond it
would be delivered early, so no configured delay may exceed it."""

BoundedDelay = Annotated[float, Field(gt=0, le=MAX_DELAY_S)]


InFlight = Annotated[int, Field(ge=1, le=1000)]


class StageConfig(ConfigModel):
    """Retry policy of one stage: a retryable failure comes back after
    ``min(backoff_max_seconds, backoff_initial_seconds * 2**(attempt-1))`` until
    ``max_attempts``, then goes to the stage's dead-letter topic. ``max_in_flight``
    bounds its records in flight per partition."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_initial_seconds: BoundedDelay = 1.0
    backoff_max_seconds: BoundedDelay = MAX_DELAY_S
    max_in_flight: InFlight | None = None
    """Records of one partition this stage handles at once (in order per key);
    ``None``: ``workers.max_in_flight``."""

    @model_validator(mode="after")
    def _ordered(self) -> StageConfig:
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise_problems(
                type(self).__name__,
                None,
                [(("backoff_initial_seconds",), "must not exceed backoff_max_seconds")],
            )
        return self

    def retry_policy(self) -> RetryPolicy:
        from stovepipe.failures.policy import RetryPolicy

        return RetryPolicy(
            self.max_attempts, self.backoff_initial_seconds, self.backoff_max_seconds
        )


class WorkersConfig(ConfigModel):
    """The pipeline's two timers, plus a retry policy per stage keyed by the stage's name.

    Which names are allowed comes from the stage registry (the stages that retry
    through delay tiers), so a new stage is configurable without touching this
    class; a stage left out gets the default policy.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, StageConfig] = Field(init=False)

    buildsignal_poll_interval_seconds: BoundedDelay = 5.0
    """The fallback cadence: runners push build ends (``WatchBuilds``); polls catch the
    ends a push lost and the runners that cannot push."""
    sweeper_stale_after_seconds: PositiveSeconds = 300.0
    max_in_flight: InFlight = 16
    """Records of one partition every consumer handles at once, unless its stage
    sets its own (``messaging.inflight``)."""

    @model_validator(mode="after")
    def _polls_fit_the_sweeper_window(self) -> WorkersConfig:
        """A followed build ages a heartbeat plus one poll period between touches
        (``stages.liveness``); a poll period longer than the rest of the sweeper's
        window would have the sweeper re-drive builds that are polled perfectly well."""
        if not self.model_fields_set:
            return self  # the defaults fit, and the default instance is built at import time
        from stovepipe.delays import choose_tier
        from stovepipe.stages.liveness import HEARTBEATS_PER_STALE_WINDOW

        window = self.sweeper_stale_after_seconds
        room = window * (1 - 1 / HEARTBEATS_PER_STALE_WINDOW)
        period = choose_tier(self.buildsignal_poll_interval_seconds)
        if period >= room:
            raise_problems(
                type(self).__name__,
                None,
                [
                    (
                        ("sweeper_stale_after_seconds",),
                        f"must exceed {period * HEARTBEATS_PER_STALE_WINDOW / 2:g} s so a "
                        f"build polled every {period:g} s (buildsignal_poll_interval_seconds "
                        "rounded up to a delay tier) is not taken for an orphan",
                    )
                ],
            )
        return self

    @model_validator(mode="after")
    def _known_stages(self) -> WorkersConfig:
        if not self.__pydantic_extra__:
            return self  # nothing to check, and the default instance is built at import time
        from stovepipe.runtime.registry import retrying_stage_names

        known = retrying_stage_names()
        problems: list[tuple[Loc, str]] = []
        for name in self.stage_policies():
            if name not in known:
                hint = difflib.get_close_matches(name, [*known, *type(self).model_fields], 1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                problems.append(
                    ((name,), f"unknown stage {name!r}{suggestion} (stages: {', '.join(known)})")
                )
        if problems:
            raise_problems(type(self).__name__, None, problems)
        return self

    def stage_policies(self) -> Mapping[str, StageConfig]:
        """The stages configured explicitly, by name."""
        return dict(self.__pydantic_extra__ or {})

    def retry_policy(self, stage: str) -> RetryPolicy:
        """The retry policy of ``stage`` (the default when the file does not name it)."""
        return self.stage_policies().get(stage, StageConfig()).retry_policy()

    def in_flight(self, stage: str) -> int:
        """Records per partition ``stage`` handles at once."""
        own = self.stage_policies().get(stage, StageConfig()).max_in_flight
        return self.max_in_flight if own is None else own


class TelemetryConfig(ConfigModel):
    """Traces, metrics and log format; everything is off or local by default.

    Traces leave the process only when ``otlp_endpoint`` names an OpenTelemetry
    collector (OTLP over gRPC); ``console`` prints finished spans to stderr for
    debugging instead. ``sampling_ratio`` applies to new traces only: a span whose
    parent was sampled is always sampled, so a Request's trace is whole or absent.
    ``metrics_port`` is the default port of every process's Prometheus ``/metrics``
    (a process's ``--metrics-port`` overrides it; ``stovepipe up`` gives each child
    its own). ``log_format`` ``auto`` writes JSON lines unless stderr is a terminal.
    """

    otlp_endpoint: str = ""
    otlp_insecure: bool = False
    sampling_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    console: bool = False
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a scraper reaches the pod's address
    log_format: Literal["auto", "json", "human"] = "auto"

    @property
    def tracing(self) -> bool:
        """True when spans are exported anywhere."""
        return bool(self.otlp_endpoint) or self.console
