"""Load ``stovepipe.yaml``: YAML → environment overrides → validated models.

Precedence: environment > file > defaults. Recognised variables:
``STOVEPIPE_DATABASE_URL`` (storage.url), ``KAFKA_BOOTSTRAP_SERVERS``
(kafka.bootstrap_servers), ``STOVEPIPE_API_LISTEN`` (api.listen) and the
nested form ``STOVEPIPE__<SECTION>__<KEY>`` for scalar settings outside
``queues`` (e.g. ``STOVEPIPE__KAFKA__PARTITIONS=6``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stovepipe.config.errors import ConfigError, from_validation_error
from stovepipe.config.models import StovepipeConfig

SHORTHANDS = {
    "STOVEPIPE_DATABASE_URL": ("storage", "url"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "STOVEPIPE_API_LISTEN": ("api", "listen"),
}
NESTED_PREFIX = "STOVEPIPE__"


def apply_env(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(dict(data))
    overrides: list[tuple[tuple[str, ...], str]] = []
    for key, value in env.items():
        if key.startswith(NESTED_PREFIX):
            path = tuple(p.lower() for p in key[len(NESTED_PREFIX) :].split("__") if p)
            if path and path[0] != "queues":
                overrides.append((path, value))
    overrides.extend((path, env[var]) for var, path in SHORTHANDS.items() if env.get(var))
    for path, value in overrides:
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def config_from_mapping(
    data: Mapping[str, Any] | None, source: str = "<config>", env: Mapping[str, str] | None = None
) -> StovepipeConfig:
    raw = apply_env(data or {}, env or {})
    try:
        return StovepipeConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(source, exc, raw) from None


def default_config(env: Mapping[str, str] | None = None) -> StovepipeConfig:
    return config_from_mapping({}, "<defaults>", env)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> StovepipeConfig:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            source, ["file not found; copy stovepipe.example.yaml to start one"]
        ) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty; expected a mapping with a 'queues' list"])
    if not isinstance(data, dict):
        raise ConfigError(
            source, ["expected a mapping at the top level (storage, kafka, queues ...)"]
        )
    return config_from_mapping(data, source, os.environ if env is None else env)
