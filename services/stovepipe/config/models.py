"""The shape of ``stovepipe.yaml``: frozen models, unknown keys rejected.

Secrets are never values in this file: tokens and webhook secrets are named by
the environment variable or file that holds them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.queue_name import validate_queue_name


class UnknownQueue(InvalidInput):
    """A Queue name that no configured Queue has."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Model):
    url: str = "sqlite+aiosqlite:///.stovepipe/stovepipe.db"


class KafkaConfig(_Model):
    bootstrap_servers: str = ""
    topic_prefix: str = ""
    partitions: Annotated[int, Field(ge=1)] = 3
    fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 20
    group_prefix: str = "stovepipe"
    max_message_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024


class TokenConfig(_Model):
    name: str
    role: Literal["ingest", "read", "admin"]
    token_env: str | None = None
    token_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secret(cls, data: object) -> object:
        if isinstance(data, dict) and "token" in data:
            raise ValueError(
                "a literal 'token' is not allowed; name the secret with token_env or token_file"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> TokenConfig:
        if bool(self.token_env) == bool(self.token_file):
            raise ValueError("give exactly one of token_env or token_file")
        return self


class TlsConfig(_Model):
    cert_file: str
    key_file: str


class ApiConfig(_Model):
    listen: str = "127.0.0.1:50051"
    tokens: tuple[TokenConfig, ...] = ()
    tls: TlsConfig | None = None


class Endpoint(_Model):
    address: str = ""


class ExtensionsConfig(_Model):
    sourcecontrol: dict[str, Endpoint] = Field(default_factory=lambda: {"git": Endpoint()})
    buildrunner: dict[str, Endpoint] = Field(default_factory=lambda: {"local": Endpoint()})
    hooks: dict[str, Endpoint] = Field(default_factory=dict)
    projectmapper: dict[str, Endpoint] = Field(default_factory=dict)


class StageConfig(_Model):
    max_attempts: Annotated[int, Field(ge=1)] = 8
    backoff_initial_seconds: Annotated[float, Field(gt=0)] = 1.0
    backoff_max_seconds: Annotated[float, Field(gt=0)] = 120.0


class WorkersConfig(_Model):
    process: StageConfig = StageConfig()
    build: StageConfig = StageConfig()
    buildsignal: StageConfig = StageConfig()
    record: StageConfig = StageConfig()
    buildsignal_poll_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
    sweeper_stale_after_seconds: Annotated[float, Field(gt=0)] = 300.0


class SourceConfig(_Model):
    extension: str = "git"
    repository: Annotated[str, Field(min_length=1)]
    ref: Annotated[str, Field(min_length=1)] = "main"


class TargetConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    command: Annotated[str, Field(min_length=1)]
    paths: tuple[str, ...] = ()
    timeout_seconds: Annotated[float, Field(gt=0)] = 600


class BuildConfig(_Model):
    runner: str = "local"
    targets: Annotated[tuple[TargetConfig, ...], Field(min_length=1)]

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: tuple[TargetConfig, ...]) -> tuple[TargetConfig, ...]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice")
            seen.add(target.name)
        return targets


class PollConfig(_Model):
    enabled: bool = True
    schedule: str | None = None
    every: Annotated[float | None, Field(gt=0)] = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (e.g. '*/5 * * * *')")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> PollConfig:
        if self.schedule and self.every:
            raise ValueError("give either schedule or every, not both")
        return self


class ProjectConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    paths: tuple[str, ...] = ()
    target_patterns: tuple[str, ...] = ()
    weight: Annotated[float, Field(gt=0)] = 1.0


class HookConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    kind: Literal["webhook", "kafka", "log"]
    url: str | None = None
    topic: str | None = None
    secret_env: str | None = None
    events: Literal["green", "not_green", "all"] = "all"

    @model_validator(mode="after")
    def _kind_fields(self) -> HookConfig:
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook hook needs url")
        if self.kind == "kafka" and not self.topic:
            raise ValueError("a kafka hook needs topic")
        return self


class QueueConfig(_Model):
    name: str
    source: SourceConfig
    build: BuildConfig
    promotion_ref: str | None = None
    max_concurrent: Annotated[int, Field(ge=1)] = 1
    poll: PollConfig = PollConfig(enabled=False)
    projects: tuple[ProjectConfig, ...] = ()
    hooks: tuple[HookConfig, ...] = ()
    depends_on: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_queue_name(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _promotion_differs(self) -> QueueConfig:
        if self.promotion_ref and self.promotion_ref == self.source.ref:
            raise ValueError(f"promotion_ref {self.promotion_ref!r} must differ from source.ref")
        return self


class StovepipeConfig(_Model):
    storage: StorageConfig = StorageConfig()
    kafka: KafkaConfig = KafkaConfig()
    api: ApiConfig = ApiConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    workers: WorkersConfig = WorkersConfig()
    queues: tuple[QueueConfig, ...] = ()

    @model_validator(mode="after")
    def _cross_checks(self) -> StovepipeConfig:
        problems: list[str] = []
        names = [q.name for q in self.queues]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"queue name {name!r} is used more than once")
        known = set(names)
        for q in self.queues:
            if q.source.extension not in self.extensions.sourcecontrol:
                problems.append(
                    f"queue {q.name}: sourcecontrol extension {q.source.extension!r} "
                    "is not declared"
                )
            if q.build.runner not in self.extensions.buildrunner:
                problems.append(f"queue {q.name}: buildrunner {q.build.runner!r} is not declared")
            for dep in q.depends_on:
                if dep not in known:
                    problems.append(f"queue {q.name}: depends_on {dep!r} is not a configured queue")
        cycle = _find_cycle({q.name: q.depends_on for q in self.queues})
        if cycle:
            problems.append("depends_on forms a cycle: " + " -> ".join(cycle))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def queue(self, name: str) -> QueueConfig:
        """The Queue called ``name``; ``UnknownQueue`` names the known ones otherwise."""
        for q in self.queues:
            if q.name == name:
                return q
        known = ", ".join(q.name for q in self.queues) or "none configured"
        raise UnknownQueue(f"unknown queue {name!r} (known: {known})")

    def api_tokens(self) -> dict[str, str]:
        """Secret token → role, read from the environment or files at call time."""
        from stovepipe.config.secrets import resolve_secret

        return {resolve_secret(t): t.role for t in self.api.tokens}


def _find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
