"""Configuration errors.

Hierarchy::

    InvalidInput                (stovepipe.domain.errors)
    ├── ConfigError             the configuration cannot be used; lists every problem
    │   └── SecretUnavailable   a secret named by the configuration cannot be read
    └── UnknownQueue            no configured Queue has the requested name

A problem is rendered as ``<source>: <field path>: <problem>``, one per line,
so an operator fixes everything in one pass. No message carries a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stovepipe.domain.errors import InvalidInput


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    ``path`` is the field path (``queues[1] (monorepo/main).max_concurrent``),
    empty for a problem with the whole file; ``line`` is the 1-based YAML line
    when the configuration came from a file.
    """

    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}: {self.path}: " if self.path else f"{source}: "
        at = f" (line {self.line})" if self.line is not None else ""
        return f"{where}{self.message}{at}"


class ConfigError(InvalidInput):
    """The configuration cannot be used; ``problems`` holds every reason."""

    def __init__(self, source: str, problems: Iterable[ConfigProblem | str]) -> None:
        self.source = source
        self.problems: tuple[ConfigProblem, ...] = tuple(
            p if isinstance(p, ConfigProblem) else ConfigProblem("", p) for p in problems
        )
        super().__init__("\n".join(p.render(source) for p in self.problems))


class SecretUnavailable(ConfigError):
    """A token or signing secret could not be read; names where it was looked for."""


class UnknownQueue(InvalidInput):
    """A Queue name that no configured Queue has; the message lists the known names."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(known)
        listed = ", ".join(self.known) or "none configured"
        super().__init__(f"unknown queue {name!r} (known: {listed})")
