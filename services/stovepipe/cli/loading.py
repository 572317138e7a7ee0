"""Find and load the configuration for a command, with errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from stovepipe.config import ConfigError, StovepipeConfig, default_config, load_config

DEFAULT_PATH = Path("stovepipe.yaml")


def load_settings(path: Path | None) -> StovepipeConfig:
    """``path`` if given, else ``./stovepipe.yaml`` if present, else the defaults."""
    try:
        if path is not None:
            return load_config(path, env=os.environ)
        if DEFAULT_PATH.exists():
            return load_config(DEFAULT_PATH, env=os.environ)
        return default_config(env=os.environ)
    except ConfigError as exc:
        typer.echo(f"configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None
