"""The ``queues`` section: what each Queue validates and how.

Rules that concern one Queue live here; rules across Queues (unique names,
declared extensions, one promoter per ref) live on ``StovepipeConfig``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, field_validator, model_validator

from stovepipe.config.base import ConfigModel, raise_problems, require_unique_names
from stovepipe.config.fields import ExtensionName, NonBlank, PositiveSeconds, RefName, is_remote
from stovepipe.config.hooks import HookConfig
from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.queue_name import validate_queue_name


def _queue_name(value: str) -> str:
    try:
        return validate_queue_name(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


QueueName = Annotated[str, AfterValidator(_queue_name)]


def branch(ref: str) -> str:
    """``refs/heads/x`` and ``x`` name the same branch."""
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
            "(use an SSH key or a git credential helper)"
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
    no changed file matches; without them the target always runs. ``network``
    lets the target reach the network from the build sandbox (off by default).
    """

    name: NonBlank
    command: NonBlank
    paths: tuple[NonBlank, ...] = ()
    timeout_seconds: PositiveSeconds = 600.0
    network: bool = False


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
    if len(expression.split()) != 5:
        raise ValueError(
            f"{expression!r} is not a five-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'); "
            "for sub-minute polling use every: <seconds>"
        )
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    return expression


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _timezone(name: str) -> str:
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC'") from None
    return name


_EPSILON = 1e-6
"""A due time computed as ``tick * every`` must fall in ``tick``, not in the one before."""

MIN_POLL_EVERY_S = 0.5
"""Faster polling would spend the SourceControl server on asking rather than answering."""


class PollConfig(ConfigModel):
    """How often ``stovepipe poller`` asks the SourceControl extension for the Queue's head.

    Exactly one of ``every`` (seconds; trigger ``poll``) or ``schedule`` (five-field
    cron read in ``timezone``; trigger ``schedule``). ``enabled: false`` keeps the
    settings but stops polling.
    """

    enabled: bool = True
    every: Annotated[float, Field(ge=MIN_POLL_EVERY_S, le=86_400)] | None = None
    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] | None = None
    """The zone the cron fields are read in (UTC when omitted)."""

    @model_validator(mode="after")
    def _one_schedule(self) -> PollConfig:
        if (self.every is None) == (self.schedule is None):
            raise ValueError("give exactly one of every (seconds) or schedule (a cron expression)")
        if self.every is not None and self.timezone is not None:
            raise ValueError("timezone only applies to schedule (cron), not to every")
        return self

    def tick_at(self, when: datetime) -> int:
        """The number of the tick ``when`` falls in: every replica computes the same one."""
        if self.every is not None:
            return math.floor(when.timestamp() / self.every + _EPSILON)
        return math.floor(self.previous_fire(when).timestamp())

    def next_due(self, after: datetime) -> datetime:
        """The first poll time strictly after ``after`` (an aware datetime)."""
        if self.every is not None:
            tick = math.floor(after.timestamp() / self.every + _EPSILON) + 1
            return datetime.fromtimestamp(tick * self.every, UTC)
        assert self.schedule is not None
        local = after.astimezone(_zone(self.timezone or "UTC"))
        due: datetime = croniter(self.schedule, local).get_next(datetime)
        return due.astimezone(UTC)

    def previous_fire(self, when: datetime) -> datetime:
        """The cron time at or before ``when`` (``schedule`` only)."""
        assert self.schedule is not None, "previous_fire needs a schedule"
        local = when.astimezone(_zone(self.timezone or "UTC"))
        fired: datetime = croniter(self.schedule, local + timedelta(microseconds=1)).get_prev(
            datetime
        )
        return fired.astimezone(UTC)


class QueueConfig(ConfigModel):
    """One Queue: a stable name resolved to a repository ref and a build."""

    refused_keys = {
        "projects": "not supported yet — per-project verdicts are tracked by their own issue; "
        "remove the key",
    }

    name: QueueName
    source: SourceConfig
    build: BuildConfig
    promotion_ref: RefName | None = None
    max_concurrent: Annotated[int, Field(ge=1)] = 1
    hooks: tuple[HookConfig, ...] = ()
    poll: PollConfig | None = None
    """Polled by ``stovepipe poller`` when set; otherwise heads come from Ingest or webhooks."""
    depends_on: tuple[QueueName, ...] = ()
    """Queues whose new green commits ingest this one (trigger ``upstream``)."""

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, hooks: tuple[HookConfig, ...]) -> tuple[HookConfig, ...]:
        require_unique_names(cls.__name__, hooks, "hook", "hooks")
        return hooks

    def hook(self, name: str) -> HookConfig | None:
        """The subscription called ``name``, if this Queue has it."""
        return next((h for h in self.hooks if h.name == name), None)

    @field_validator("depends_on")
    @classmethod
    def _no_repeats(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(map(repr, repeated))} more than once")
        return names

    @model_validator(mode="after")
    def _promotion_differs(self) -> QueueConfig:
        if self.promotion_ref is not None and branch(self.promotion_ref) == branch(self.source.ref):
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
