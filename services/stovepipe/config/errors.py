"""Configuration errors that list every problem with its field path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from stovepipe.domain.errors import InvalidInput


class ConfigError(InvalidInput):
    """The configuration cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


def field_path(loc: Sequence[int | str], data: Any) -> str:
    """``('queues', 1, 'build')`` → ``queues[1] (mono/main).build`` using the raw data for names."""
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, Sequence) and part < len(node) else None
            if isinstance(node, Mapping) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, Mapping) else None
    return out


def from_validation_error(source: str, exc: ValidationError, data: Any) -> ConfigError:
    problems = []
    errors = exc.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]
    for err in errors:
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        here = tuple(err["loc"])
        if err["type"] == "too_short" and any(o[: len(here)] == here and o != here for o in locs):
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against stovepipe.example.yaml)"
        where = field_path(loc, data) or "(top level)"
        problems.append(f"{where}: {message}")
    return ConfigError(source, problems)
