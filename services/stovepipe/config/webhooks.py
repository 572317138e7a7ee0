"""The ``webhooks`` section: the push-webhook receiver (``stovepipe webhooks``).

Each code host that may call it gets an entry with the shared secret *by
reference* (``secret_env`` or ``secret_file``, never the secret). A host that
is not listed has no endpoint: its deliveries answer 404. Without the section
no receiver runs, and ``stovepipe up`` does not start one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from stovepipe.config.base import ConfigModel
from stovepipe.config.fields import Address, EnvName, NonBlank
from stovepipe.config.secrets import SecretRef

CodeHost = Literal["github", "gitlab", "gitea"]
"""Forgejo speaks Gitea's webhook dialect; configure it as ``gitea``."""

DEFAULT_WEBHOOKS_LISTEN = "127.0.0.1:8787"


class WebhookSecretConfig(ConfigModel):
    """Where one code host's webhook secret lives: exactly one of the two."""

    refused_keys = {
        "secret": "a literal secret is not allowed in the file; name the environment variable "
        "that holds it with secret_env, or a file with secret_file",
    }

    secret_env: EnvName | None = None
    secret_file: NonBlank | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WebhookSecretConfig:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file")
        return self

    def secret_ref(self, host: str) -> SecretRef:
        return SecretRef(f"webhooks.{host}", env=self.secret_env, file=self.secret_file)


class WebhooksConfig(ConfigModel):
    """The receiver's address, its body limit, and one secret per code host."""

    listen: Address = DEFAULT_WEBHOOKS_LISTEN
    max_body_bytes: Annotated[int, Field(ge=1024, le=25 * 1024 * 1024)] = 1024 * 1024
    """GitHub caps deliveries at 25 MB; a larger body answers 413 unread."""
    ingest_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 8.0
    """How long one delivery may spend resolving heads before it answers 503 (code hosts
    give up on a delivery after about ten seconds)."""
    github: WebhookSecretConfig | None = None
    gitlab: WebhookSecretConfig | None = None
    gitea: WebhookSecretConfig | None = None

    @model_validator(mode="after")
    def _some_host(self) -> WebhooksConfig:
        if self.github is None and self.gitlab is None and self.gitea is None:
            raise ValueError("configure at least one of github, gitlab or gitea")
        return self

    def hosts(self) -> dict[CodeHost, WebhookSecretConfig]:
        """The configured hosts and their secrets."""
        found: dict[CodeHost, WebhookSecretConfig] = {}
        if self.github is not None:
            found["github"] = self.github
        if self.gitlab is not None:
            found["gitlab"] = self.gitlab
        if self.gitea is not None:
            found["gitea"] = self.gitea
        return found
