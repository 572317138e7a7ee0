"""Build a ``StovepipeConfig``: file (YAML) → environment overrides → validation.

Precedence is environment > file > defaults. Relative paths in the file (a
local repository, token and TLS files) are taken relative to the file's
directory, so the same file works whatever directory a process starts in; ``~``
is expanded. The SQLite URL is left as written (it is relative to the working
directory; ``stovepipe up`` moves it into its state directory).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from stovepipe.config.base import ConfigModel, Loc, combined
from stovepipe.config.document import read_document
from stovepipe.config.env import read_env_overrides
from stovepipe.config.errors import ConfigError, ConfigProblem
from stovepipe.config.fields import is_remote
from stovepipe.config.models import StovepipeConfig, cross_section_problems
from stovepipe.config.problems import problems_from
from stovepipe.config.queues import QueueConfig
from stovepipe.config.sections import ExtensionsConfig

M = TypeVar("M", bound=ConfigModel)


def _build(
    data: Any, source: str, env: Mapping[str, str], line_of: Callable[[Loc], int | None] | None
) -> StovepipeConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(
            source, ["expected a mapping at the top level (storage, kafka, queues...)"]
        )
    overrides = read_env_overrides(env)
    merged = overrides.apply(data)
    problems: list[ConfigProblem] = list(overrides.problems)
    try:
        config = StovepipeConfig.model_validate(merged)
    except ValidationError as exc:
        salvaged = _salvaged_problems(merged)
        error = combined(exc.title, exc, salvaged) if salvaged else exc
        problems.extend(problems_from(error, merged, StovepipeConfig, line_of, overrides.origin_of))
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def _valid(model: type[M], data: object) -> M | None:
    """``data`` as ``model`` (ignoring the keys it refuses), or ``None`` if it is not one."""
    if isinstance(data, Mapping):
        data = {k: v for k, v in data.items() if k not in model.refused_keys}
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _salvaged_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """The rules across sections, over the Queues (and extensions) that are valid on their
    own: ``StovepipeConfig`` checks them only once everything else is valid."""
    entries = data.get("queues")
    queues = [
        (i, queue)
        for i, entry in enumerate(entries if isinstance(entries, list | tuple) else ())
        if (queue := _valid(QueueConfig, entry)) is not None
    ]
    return cross_section_problems(_valid(ExtensionsConfig, data.get("extensions", {})), queues)


def config_from_mapping(
    data: Mapping[str, Any] | None,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
) -> StovepipeConfig:
    """Validate ``data`` shaped like ``stovepipe.yaml``; ``source`` names it in errors.

    The environment applies only when ``env`` is given, so programmatic and test
    configurations mean exactly what they say.
    """
    return _build({} if data is None else data, source, env or {}, None)


def default_config(env: Mapping[str, str] | None = None) -> StovepipeConfig:
    """The built-in defaults (no Queues) with ``env`` (default: the process environment)
    applied: what a command runs with when there is no file."""
    return _build({}, "<defaults>", os.environ if env is None else env, None)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> StovepipeConfig:
    """Load and validate ``path`` with ``env`` (default: the process environment) applied.

    Raises ``ConfigError`` listing every problem as ``<file>: <field path>: <problem>``.
    """
    path = Path(path)
    document = read_document(path)
    data = resolve_relative_paths(document.data, path.parent.absolute())
    return _build(data, str(path), os.environ if env is None else env, document.line_of)


def _resolved(value: object, base: Path) -> object:
    if not isinstance(value, str) or not value.strip() or is_remote(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else Path(os.path.normpath(base / path)))


def _entries(node: object, key: str) -> list[Any]:
    value = node.get(key) if isinstance(node, Mapping) else None
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def resolve_relative_paths(data: Any, base: Path) -> Any:
    """A copy of ``data`` with its file-system paths made absolute against ``base``."""
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    api = data.get("api")
    tls = api.get("tls") if isinstance(api, dict) else None
    if isinstance(tls, dict):
        for key in ("cert_file", "key_file", "client_ca_file"):
            if key in tls:
                tls[key] = _resolved(tls[key], base)
    console = data.get("console")
    console_tls = console.get("tls") if isinstance(console, dict) else None
    if isinstance(console_tls, dict):
        for key in ("cert_file", "key_file", "client_ca_file"):
            if key in console_tls:
                console_tls[key] = _resolved(console_tls[key], base)
    for token in _entries(api, "tokens"):
        if "token_file" in token:
            token["token_file"] = _resolved(token["token_file"], base)
    hooks = data.get("webhooks")
    for host in ("github", "gitlab", "gitea"):
        entry = hooks.get(host) if isinstance(hooks, dict) else None
        if isinstance(entry, dict) and "secret_file" in entry:
            entry["secret_file"] = _resolved(entry["secret_file"], base)
    for queue in _entries(data, "queues"):
        source = queue.get("source")
        if isinstance(source, dict) and "repository" in source:
            source["repository"] = _resolved(source["repository"], base)
    return data
