"""Environment overrides: environment > file > defaults.

Two forms are read, both for settings outside ``queues`` only:

- shorthands deployments already use: ``STOVEPIPE_DATABASE_URL`` (storage.url),
  ``KAFKA_BOOTSTRAP_SERVERS`` (kafka.bootstrap_servers), ``STOVEPIPE_API_LISTEN``
  (api.listen);
- the nested form ``STOVEPIPE__<SECTION>__<KEY>[__<KEY>...]``, e.g.
  ``STOVEPIPE__KAFKA__PARTITIONS=6`` or
  ``STOVEPIPE__EXTENSIONS__SOURCECONTROL__GIT__ADDRESS=git-ext:50061``.

When both name the same setting the nested form wins: it is specific to
Stovepipe, while a shorthand such as ``KAFKA_BOOTSTRAP_SERVERS`` may be set
for other programs too. Names are case-insensitive; empty values count as
unset. Queues come only from the file, so the set of validated Queues can be
read in one place.

pydantic-settings reads the nested form (prefix, nesting, case, JSON for whole
sections); the source below only lets callers pass the environment explicitly.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from stovepipe.config.base import Loc, nearest
from stovepipe.config.errors import ConfigProblem

PREFIX = "STOVEPIPE__"
DELIMITER = "__"
SECTIONS = ("storage", "kafka", "api", "extensions", "workers", "telemetry")
SHORTHANDS: Mapping[str, tuple[str, str]] = {
    "STOVEPIPE_DATABASE_URL": ("storage", "url"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "STOVEPIPE_API_LISTEN": ("api", "listen"),
}


class _Sections(BaseSettings):
    """What the nested variables set. Sections stay partial dicts: validation happens once,
    on the merged configuration, so a problem is reported at its real field path."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=DELIMITER,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
    )

    storage: dict[str, Any] = Field(default_factory=dict)
    kafka: dict[str, Any] = Field(default_factory=dict)
    api: dict[str, Any] = Field(default_factory=dict)
    extensions: dict[str, Any] = Field(default_factory=dict)
    workers: dict[str, Any] = Field(default_factory=dict)
    telemetry: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``_GivenEnvironment`` read: never the process environment behind it."""
        return (init_settings,)


class _GivenEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source, reading a mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@dataclass(frozen=True)
class EnvOverrides:
    """The partial configuration the environment sets, and which variable set what."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: Mapping[Loc, str] = field(default_factory=dict)
    problems: tuple[ConfigProblem, ...] = ()

    def origin_of(self, loc: Loc) -> str | None:
        """The variable that set ``loc`` or its nearest ancestor or, failing those, a setting
        inside ``loc`` (a refused section set key by key), if any did."""
        found = nearest(self.origins, loc)
        if found is None and loc:
            inside = (name for path, name in self.origins.items() if path[: len(loc)] == loc)
            found = next(inside, None)
        return found

    def apply(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` with the overrides merged in, key by key; ``data`` is left untouched."""
        merged = copy.deepcopy(dict(data))
        _merge(merged, self.data)
        return merged


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _unknown_section(name: str, section: str) -> ConfigProblem:
    if section == "queues":
        message = "queues are configured only in the file; remove this variable"
    else:
        close = difflib.get_close_matches(section, SECTIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = f"unknown section {section!r}; {hint}(sections: {', '.join(SECTIONS)})"
    return ConfigProblem(f"environment variable {name}", message)


def read_env_overrides(environ: Mapping[str, str]) -> EnvOverrides:
    """Collect the overrides in ``environ``; misdirected variables become problems."""
    named = {name.upper(): name for name, value in environ.items() if value}
    data: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    problems: list[ConfigProblem] = []
    for variable, (section, key) in SHORTHANDS.items():
        if variable in named:
            data.setdefault(section, {})[key] = environ[named[variable]]
            origins[(section, key)] = named[variable]
    for upper, name in named.items():
        if not upper.startswith(PREFIX):
            continue
        path = tuple(p.lower() for p in upper[len(PREFIX) :].split(DELIMITER) if p)
        if not path:
            continue
        if path[0] in SECTIONS:
            origins[path] = name
        else:
            problems.append(_unknown_section(name, path[0]))
    try:
        found = _Sections.model_validate(_GivenEnvironment(_Sections, environ)())
    except SettingsError as exc:
        field_named = re.search(r'field "(\w+)"', str(exc))
        name = f"{PREFIX}{field_named[1].upper()}" if field_named else PREFIX + "<SECTION>"
        problems.append(
            ConfigProblem(
                f"environment variable {name}",
                "a whole section must be given as JSON; set one key at a time with "
                f"{name}{DELIMITER}<KEY>=<value>",
            )
        )
        return EnvOverrides(problems=tuple(problems))
    for section in SECTIONS:
        nested: dict[str, Any] = getattr(found, section)
        if nested:
            _merge(data.setdefault(section, {}), nested)
    return EnvOverrides(data, origins, tuple(problems))
