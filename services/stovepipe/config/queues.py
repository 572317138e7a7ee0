"""The ``queues`` section: what each Queue validates and how.

Rules that concern one Queue live here; rules across Queues (unique names,
declared extensions, one promoter per ref) live on ``StovepipeConfig``.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from stovepipe.config.base import ConfigModel, raise_problems, require_unique_names
from stovepipe.config.fields import ExtensionName, NonBlank, PositiveSeconds, RefName, is_remote
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

    refused_keys = {
        "poll": "not supported yet — the built-in poller is tracked by its own issue; remove "
        "the key (report heads with `stovepipe ingest` or the Ingest RPC)",
        "hooks": "not supported yet — verdict hooks (webhook, kafka, log) are tracked by their "
        "own issue; remove the key (follow verdicts with WatchEvents)",
        "projects": "not supported yet — per-project verdicts are tracked by their own issue; "
        "remove the key",
        "depends_on": "not supported yet — dependencies between Queues are tracked by their "
        "own issue; remove the key",
    }

    name: QueueName
    source: SourceConfig
    build: BuildConfig
    promotion_ref: RefName | None = None
    max_concurrent: Annotated[int, Field(ge=1)] = 1
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
