"""The ``queues`` section: what each Queue validates, how, and who hears about it.

Rules that only concern one Queue live here; rules across Queues (unique names,
``depends_on``, declared extensions) live in ``stovepipe.config.crosscheck``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, field_validator, model_validator

from stovepipe.config.base import ConfigModel, Loc, raise_problems, require_unique_names
from stovepipe.config.fields import (
    EnvName,
    ExtensionName,
    NonBlank,
    PositiveSeconds,
    RefName,
    check_kafka_topic_part,
    is_remote,
)
from stovepipe.config.redaction import OptionalUrlWithCredentials
from stovepipe.config.secrets import SecretRef
from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.queue_name import validate_queue_name


def _queue_name(value: str) -> str:
    try:
        return validate_queue_name(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


QueueName = Annotated[str, AfterValidator(_queue_name)]


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _no_credentials(url: str) -> str:
    """A password inside a URL would put a secret in the file."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]:
        raise ValueError(
            "the URL embeds a password; the file must not hold secrets "
            "(use an SSH key or a git credential helper for repositories, secret_env for hooks)"
        )
    return url


class SourceConfig(ConfigModel):
    """Where the Queue's commits come from, through which SourceControl extension."""

    extension: ExtensionName = "git"
    repository: Annotated[NonBlank, AfterValidator(_no_credentials)]
    ref: RefName = "main"

    @property
    def is_remote(self) -> bool:
        """Whether ``repository`` is a URL rather than a local path."""
        return is_remote(self.repository)


class TargetConfig(ConfigModel):
    """One build target: a shell command the BuildRunner runs at the commit under test.

    ``paths`` (gitignore-style globs) let an incremental build skip the target when
    no changed file matches; without them the target always runs.
    """

    name: NonBlank
    command: NonBlank
    paths: tuple[NonBlank, ...] = ()
    timeout_seconds: PositiveSeconds = 600.0


class BuildConfig(ConfigModel):
    """How a commit is built: which BuildRunner extension, which targets."""

    runner: ExtensionName = "local"
    targets: Annotated[tuple[TargetConfig, ...], Field(min_length=1)]

    @field_validator("targets")
    @classmethod
    def _unique(cls, targets: tuple[TargetConfig, ...]) -> tuple[TargetConfig, ...]:
        require_unique_names(cls.__name__, targets, "target", "targets")
        return targets


def _cron(expression: str) -> str:
    if not expression.startswith("@") and len(expression.split()) != 5:
        raise ValueError(
            f"{expression!r} is not a five-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'); "
            "for sub-minute polling use every: <seconds>"
        )
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    return expression


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _timezone(name: str) -> str:
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC'") from None
    return name


class PollConfig(ConfigModel):
    """How often the built-in poller asks the SourceControl extension for the Queue's head.

    Exactly one of ``schedule`` (cron, read in ``timezone``) or ``every`` (seconds).
    ``enabled: false`` keeps the schedule but stops polling.
    """

    enabled: bool = True
    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    every: PositiveSeconds | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"

    @model_validator(mode="after")
    def _one_schedule(self) -> PollConfig:
        if self.schedule is not None and self.every is not None:
            raise ValueError("give either schedule (cron) or every (seconds), not both")
        if self.enabled and self.schedule is None and self.every is None:
            raise ValueError("give schedule (a cron expression) or every (seconds)")
        return self

    def next_due(self, after: datetime) -> datetime | None:
        """The first poll time strictly after ``after`` (an aware datetime); ``None`` when
        polling is disabled."""
        if not self.enabled:
            return None
        if self.every is not None:
            return after + timedelta(seconds=self.every)
        local = after.astimezone(_zone(self.timezone))
        due: datetime = croniter(self.schedule, local).get_next(datetime)
        return due.astimezone(after.tzinfo)


class ProjectConfig(ConfigModel):
    """A slice of the repository with its own greenness (Phase 2 analysis).

    A changed file belongs to the project when it matches ``paths``, a build target
    when it matches ``target_patterns``; ``weight`` is the project's share when the
    whole-repository degree is computed from per-project verdicts.
    """

    name: NonBlank
    paths: tuple[NonBlank, ...] = ()
    target_patterns: tuple[NonBlank, ...] = ()
    weight: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _matches_something(self) -> ProjectConfig:
        if not self.paths and not self.target_patterns:
            raise ValueError("give paths, target_patterns or both; this project matches nothing")
        return self


HookKind = Literal["webhook", "kafka", "log"]


class HookConfig(ConfigModel):
    """Who is told when a commit of this Queue is recorded; ``kind`` also names the
    Hooks extension that delivers it."""

    literal_secret_keys = {
        "secret": "a literal secret is not allowed in the file; name the environment "
        "variable that holds it with secret_env, or a file with secret_file",
    }

    name: NonBlank
    kind: HookKind
    url: OptionalUrlWithCredentials = None
    topic: Annotated[NonBlank, AfterValidator(check_kafka_topic_part)] | None = None
    secret_env: EnvName | None = None
    secret_file: NonBlank | None = None
    events: Literal["green", "not_green", "all"] = "all"

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is None:
            return None
        _no_credentials(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> HookConfig:
        problems: list[tuple[Loc, str]] = []
        if self.kind == "webhook" and self.url is None:
            problems.append((("url",), "a webhook hook needs url"))
        if self.kind == "kafka" and self.topic is None:
            problems.append((("topic",), "a kafka hook needs topic"))
        if self.kind != "webhook" and self.url is not None:
            problems.append((("url",), f"applies to webhook hooks only, not {self.kind}"))
        if self.kind != "kafka" and self.topic is not None:
            problems.append((("topic",), f"applies to kafka hooks only, not {self.kind}"))
        for key in ("secret_env", "secret_file"):
            if self.kind != "webhook" and getattr(self, key) is not None:
                problems.append(((key,), "signs webhook deliveries only"))
        if self.secret_env is not None and self.secret_file is not None:
            problems.append((("secret_file",), "give at most one of secret_env or secret_file"))
        if problems:
            raise_problems(type(self).__name__, None, problems)
        return self

    def secret_ref(self) -> SecretRef | None:
        """Where the webhook's HMAC-SHA256 signing key lives, if deliveries are signed."""
        if self.secret_env is None and self.secret_file is None:
            return None
        return SecretRef(f"hook {self.name!r}", env=self.secret_env, file=self.secret_file)


class QueueConfig(ConfigModel):
    """One Queue: a stable name resolved to a repository ref, a build and its consumers."""

    name: QueueName
    source: SourceConfig
    build: BuildConfig
    promotion_ref: RefName | None = None
    max_concurrent: Annotated[int, Field(ge=1)] = 1
    poll: PollConfig | None = None
    projects: tuple[ProjectConfig, ...] = ()
    hooks: tuple[HookConfig, ...] = ()
    depends_on: tuple[NonBlank, ...] = ()

    @field_validator("projects")
    @classmethod
    def _unique_projects(cls, projects: tuple[ProjectConfig, ...]) -> tuple[ProjectConfig, ...]:
        require_unique_names(cls.__name__, projects, "project", "projects")
        return projects

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, hooks: tuple[HookConfig, ...]) -> tuple[HookConfig, ...]:
        require_unique_names(cls.__name__, hooks, "hook", "hooks")
        return hooks

    @model_validator(mode="after")
    def _promotion_differs(self) -> QueueConfig:
        if self.promotion_ref is not None and _branch(self.promotion_ref) == _branch(
            self.source.ref
        ):
            raise_problems(
                type(self).__name__,
                None,
                [
                    (
                        ("promotion_ref",),
                        f"must differ from source.ref ({self.source.ref!r}): "
                        "Stovepipe would move the branch it validates",
                    )
                ],
            )
        return self

    @property
    def polled(self) -> bool:
        """Whether the built-in poller should poll this Queue."""
        return self.poll is not None and self.poll.enabled
