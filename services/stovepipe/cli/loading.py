"""Find and load the configuration for a command, with errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from stovepipe.config import ConfigError, StovepipeConfig, default_config, load_config

DEFAULT_PATH = Path("stovepipe.yaml")
UP_EFFECTIVE_PATH = Path(".stovepipe") / "stovepipe.effective.yaml"
"""Where ``stovepipe up`` (default ``--state-dir``) writes the configuration its children run
with: the embedded broker's address, the SQLite file, the extension addresses."""


def find_config(path: Path | None, *, running_up: bool = True) -> Path | None:
    """``path`` if given; else, with ``running_up``, the effective configuration of a
    ``stovepipe up`` started in this directory; else ``./stovepipe.yaml`` if present.

    An operator command (``dlq list``, ``db upgrade``) run next to ``stovepipe up``
    must talk to the broker and database ``up`` started, which only the effective
    configuration names; ``up`` itself reads the user's file, never its own output.
    """
    if path is not None:
        return path
    if running_up and UP_EFFECTIVE_PATH.is_file():
        typer.echo(f"using the configuration of `stovepipe up`: {UP_EFFECTIVE_PATH}", err=True)
        return UP_EFFECTIVE_PATH
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load_settings(path: Path | None, *, running_up: bool = True) -> StovepipeConfig:
    """The configuration :func:`find_config` names, or the defaults."""
    try:
        found = find_config(path, running_up=running_up)
        if found is not None:
            return load_config(found, env=os.environ)
        return default_config(env=os.environ)
    except ConfigError as exc:
        typer.echo(f"configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
