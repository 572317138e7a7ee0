"""Read secrets named by the configuration; never echo their values."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stovepipe.config.errors import ConfigError
from stovepipe.config.models import TokenConfig


def resolve_secret(token: TokenConfig, env: Mapping[str, str] | None = None) -> str:
    """The secret of ``token`` from its environment variable or file."""
    env = os.environ if env is None else env
    if token.token_env:
        value = env.get(token.token_env, "")
        if not value:
            raise ConfigError(
                "api.tokens", [f"{token.name}: environment variable {token.token_env} is not set"]
            )
        return value
    assert token.token_file is not None
    path = Path(token.token_file)
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "api.tokens", [f"{token.name}: cannot read {path}: {exc.strerror}"]
        ) from None
    if not value:
        raise ConfigError("api.tokens", [f"{token.name}: {path} is empty"])
    return value
