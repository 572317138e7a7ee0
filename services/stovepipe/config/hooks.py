"""A Queue's ``hooks:``: who hears about its verdicts, through which HooksService.

A subscription names the HooksService extension that carries it (``kind``,
declared under ``extensions.hooks``), which events it wants, and the target
that extension needs (a URL and a signing secret for ``webhook``, a topic for
``kafka``; nothing for ``log``). The signing secret is named by reference
(``secret_env`` / ``secret_file``) and read only by the hooks server that signs;
the core never holds it.
"""

from __future__ import annotations

import enum
from pathlib import PurePath
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from stovepipe.config.base import ConfigModel
from stovepipe.config.fields import EnvName, ExtensionName, NonBlank
from stovepipe.config.secrets import SecretRef

MAX_HOOK_DELAY_S = 3600.0
"""The longest wait between two attempts of one delivery."""


class HookEvents(enum.StrEnum):
    """Which verdict events a subscription receives."""

    GREEN = "green"
    """Every green verdict (``dev.stovepipe.verdict.recorded`` with degree 0)."""
    NOT_GREEN = "not_green"
    """Every not-green verdict (``dev.stovepipe.verdict.recorded`` with degree > 0)."""
    TRANSITIONS = "transitions"
    """``dev.stovepipe.queue.became_green`` and ``became_broken`` only."""
    ALL = "all"
    """Every event on the hook topic for the Queue, whatever its type."""


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value[:200]!r} is not an http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("the URL embeds credentials; the file must not hold secrets")
    return value


def _absolute(value: str) -> str:
    if not PurePath(value).is_absolute():
        raise ValueError(f"must be an absolute path, got {value!r}")
    return value


WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
AbsolutePath = Annotated[NonBlank, AfterValidator(_absolute)]
HookName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$")]


class HookConfig(ConfigModel):
    """One subscription of one Queue."""

    name: HookName
    kind: ExtensionName
    events: HookEvents = HookEvents.ALL
    projects: tuple[NonBlank, ...] = ()
    """Only events of these projects; empty means every scope (the whole repository
    and, once per-project verdicts exist, each project)."""
    url: WebhookUrl | None = None
    secret_env: EnvName | None = None
    secret_file: AbsolutePath | None = None
    previous_secret_env: EnvName | None = None
    """During a key rotation: the old key, signed with as well, so receivers that
    still hold it keep verifying."""
    previous_secret_file: AbsolutePath | None = None
    topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")] | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backoff_initial_seconds: Annotated[float, Field(gt=0, le=MAX_HOOK_DELAY_S)] = 1.0
    backoff_max_seconds: Annotated[float, Field(gt=0, le=MAX_HOOK_DELAY_S)] = 300.0

    @model_validator(mode="after")
    def _consistent(self) -> HookConfig:
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError("give at most one of secret_env or secret_file")
        if self.previous_secret_env is not None and self.previous_secret_file is not None:
            raise ValueError("give at most one of previous_secret_env or previous_secret_file")
        has_secret = self.secret_env is not None or self.secret_file is not None
        if self.kind == "webhook":
            if self.url is None:
                raise ValueError("a webhook hook needs url")
            if not has_secret:
                raise ValueError(
                    "a webhook hook needs secret_env or secret_file (whsec_<base64>): "
                    "receivers verify the signature"
                )
        if self.kind == "kafka" and self.topic is None:
            raise ValueError("a kafka hook needs topic")
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_initial_seconds must not exceed backoff_max_seconds")
        return self

    def secret_ref(self) -> SecretRef:
        return SecretRef(f"hook {self.name!r}", env=self.secret_env, file=self.secret_file)

    def previous_secret_ref(self) -> SecretRef | None:
        if self.previous_secret_env is None and self.previous_secret_file is None:
            return None
        return SecretRef(
            f"hook {self.name!r} (previous key)",
            env=self.previous_secret_env,
            file=self.previous_secret_file,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: doubling from the initial delay."""
        return float(
            min(self.backoff_max_seconds, self.backoff_initial_seconds * 2.0 ** max(attempt - 1, 0))
        )
