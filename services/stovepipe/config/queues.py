"""The ``queues`` section: what each Queue validates and how.

Rules that concern one Queue live here; rules across Queues (unique names,
declared extensions, one promoter per ref) live on ``StovepipeConfig``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pathspec
from croniter import croniter
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from stovepipe.config.base import ConfigModel, Loc, raise_problems, require_unique_names
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


PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _project_name(value: str) -> str:
    if not PROJECT_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a project name: 1-63 of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return value


def _path_globs(globs: tuple[str, ...]) -> tuple[str, ...]:
    try:
        pathspec.GitIgnoreSpec.from_lines(globs)
    except (re.error, ValueError, TypeError) as exc:
        raise ValueError(f"bad path glob: {exc}") from None
    return globs


class ProjectConfig(ConfigModel):
    """One project of a monorepo Queue: the slice of it a team deploys.

    ``paths`` (gitignore-style globs) say which changed files touch it;
    ``targets`` (shell-style patterns over target names) say which build targets
    validate it; ``weight`` is its share of the whole-repository degree.
    """

    name: Annotated[str, AfterValidator(_project_name)]
    paths: Annotated[tuple[NonBlank, ...], AfterValidator(_path_globs)] = ()
    targets: Annotated[tuple[NonBlank, ...], Field(min_length=1)]
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0
    promotion_ref: RefName | None = None

    def owns_target(self, target: str) -> bool:
        """Whether the build target ``target`` validates this project."""
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.targets)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> object:
    """``6h``/``90m``/``30s``/``1d`` or a plain number, as seconds; anything else is
    left for the field's own type check to refuse."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _UNIT_S[match[2]]
    if isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration such as 6h, 90m, 30s or 1d")
    return value


class StalenessConfig(ConfigModel):
    """The freshness objective of a Queue's last green commit.

    A Queue is stale while commits are waiting behind its last green one and
    either more than ``max_commits`` of them wait, or the last green commit was
    reported more than ``max_age`` ago (``6h``, ``90m``, ``1d`` or seconds). An
    idle branch (nothing newer than its last green) is never stale, however old
    its last green is.
    """

    max_age: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 6 * 3600.0
    max_commits: Annotated[int, Field(ge=0)] = 50


class QueueConfig(ConfigModel):
    """One Queue: a stable name resolved to a repository ref and a build."""

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

    projects: tuple[ProjectConfig, ...] = ()
    inherit_unaffected: bool = True
    project_mapper: ExtensionName = "config"

    def project(self, name: str) -> ProjectConfig | None:
        """The project called ``name``, or ``None``."""
        for project in self.projects:
            if project.name == name:
                return project
        return None

    @property
    def project_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.projects)

    @model_validator(mode="after")
    def _projects_cover_targets(self) -> QueueConfig:
        """Every target belongs to a project and every project has a target: a failing
        target outside every project would leave the whole-repository degree green."""
        if not self.projects:
            return self
        problems: list[tuple[Loc, str]] = []
        names = [t.name for t in self.build.targets]
        seen: dict[str, int] = {}
        for i, project in enumerate(self.projects):
            if (first := seen.setdefault(project.name, i)) != i:
                problems.append(
                    (("projects", i, "name"), f"{project.name!r} is already projects[{first}]")
                )
            if not any(project.owns_target(n) for n in names):
                problems.append(
                    (
                        ("projects", i, "targets"),
                        f"no build target matches {list(project.targets)} "
                        f"(targets: {', '.join(names)})",
                    )
                )
            ref = project.promotion_ref
            if ref is not None and branch(ref) in {
                branch(self.source.ref),
                branch(self.promotion_ref or self.source.ref),
            }:
                problems.append(
                    (
                        ("projects", i, "promotion_ref"),
                        "must differ from source.ref and the Queue's promotion_ref",
                    )
                )
        for name in names:
            if not any(p.owns_target(name) for p in self.projects):
                problems.append(
                    (
                        ("projects",),
                        f"target {name!r} belongs to no project; every target must, or a "
                        "failure in it would not count against the whole repository",
                    )
                )
        refs = [branch(p.promotion_ref) for p in self.projects if p.promotion_ref]
        if len(refs) != len(set(refs)):
            problems.append((("projects",), "two projects promote the same ref"))
        if problems:
            raise_problems(type(self).__name__, None, problems)
        return self

    staleness: StalenessConfig | None = None

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
