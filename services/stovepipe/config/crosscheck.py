"""Rules that span Queues: unique names, declared extensions, promotion refs.

They read the raw (not yet validated) data so that they run even when some
field elsewhere is wrong, and every problem is reported in one pass. Values of
the wrong type are skipped here; field validation reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from stovepipe.config.base import Loc, repeated
from stovepipe.config.queues import BuildConfig, SourceConfig
from stovepipe.config.sections import ExtensionsConfig

Problems = list[tuple[Loc, str]]
Queues = Sequence[tuple[int, Mapping[str, Any]]]
_DEFAULT_EXTENSIONS = ExtensionsConfig()


def _text(mapping: object, key: str, default: str | None = None) -> str | None:
    if not isinstance(mapping, Mapping):
        return default
    value = mapping.get(key, default)
    return value if isinstance(value, str) else None


def _items(mapping: object, key: str) -> list[tuple[int, Any]]:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    return list(enumerate(value)) if isinstance(value, list | tuple) else []


def as_plain_data(value: object) -> object:
    """``value`` with any model inside turned into plain data, so the rules see a
    programmatically built ``StovepipeConfig(queues=(QueueConfig(...),))`` like a file."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {key: as_plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_plain_data(item) for item in value]
    return value


def cross_check(data: object) -> Problems:
    """Every cross-Queue problem in ``data``, each with the location it concerns."""
    queues = [(i, q) for i, q in _items(data, "queues") if isinstance(q, Mapping)]
    extensions = data.get("extensions") if isinstance(data, Mapping) else None
    return [
        *_duplicate_names(queues),
        *_undeclared_extensions(extensions, queues),
        *_shared_promotion_refs(queues),
    ]


def _duplicate_names(queues: Queues) -> Problems:
    named = [(i, name) for i, q in queues if (name := _text(q, "name")) is not None]
    return [
        (
            ("queues", named[at][0], "name"),
            f"queue name {named[at][1]!r} is already used by queues[{named[first][0]}]",
        )
        for at, first in repeated([name for _, name in named])
    ]


def _declared(extensions: object, kind: str) -> list[str]:
    """The names ``extensions.<kind>`` offers: as written, else the defaults."""
    section = extensions.get(kind) if isinstance(extensions, Mapping) else None
    if isinstance(section, Mapping):
        return [str(name) for name in section]
    defaults: Mapping[str, object] = getattr(_DEFAULT_EXTENSIONS, kind)
    return list(defaults)


def _undeclared(kind: str, name: str, names: list[str]) -> str:
    offered = ", ".join(sorted(names)) if names else "none"
    return f"{name!r} is not declared under extensions.{kind} (declared: {offered})"


def _undeclared_extensions(extensions: object, queues: Queues) -> Problems:
    """Queues must name declared extensions."""
    problems: Problems = []
    sourcecontrol = _declared(extensions, "sourcecontrol")
    buildrunner = _declared(extensions, "buildrunner")
    default_source = str(SourceConfig.model_fields["extension"].default)
    default_runner = str(BuildConfig.model_fields["runner"].default)
    for i, queue in queues:
        source = _text(queue.get("source"), "extension", default_source)
        if source is not None and source not in sourcecontrol:
            loc: Loc = ("queues", i, "source", "extension")
            problems.append((loc, _undeclared("sourcecontrol", source, sourcecontrol)))
        runner = _text(queue.get("build"), "runner", default_runner)
        if runner is not None and runner not in buildrunner:
            loc = ("queues", i, "build", "runner")
            problems.append((loc, _undeclared("buildrunner", runner, buildrunner)))
    return problems


def _shared_promotion_refs(queues: Queues) -> Problems:
    """Two Queues moving the same ref of the same repository would fight over it."""
    targets: list[tuple[int, tuple[str, str]]] = []
    for i, queue in queues:
        ref = _text(queue, "promotion_ref")
        repository = _text(queue.get("source"), "repository")
        if ref is not None and repository is not None:
            targets.append((i, (repository, ref.removeprefix("refs/heads/"))))
    return [
        (
            ("queues", targets[at][0], "promotion_ref"),
            f"queues[{targets[first][0]}] already promotes {targets[at][1][1]!r} "
            "in the same repository",
        )
        for at, first in repeated([key for _, key in targets])
    ]
