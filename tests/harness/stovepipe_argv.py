"""Whether an argument vector is a real ``stovepipe`` invocation, judged by the CLI itself.

The deployment files (Dockerfile, Compose, Kubernetes) spell commands as data,
so nothing runs them in the suite. :func:`parse` runs each through the Typer
app's own parser instead: every verb must exist in ``stovepipe.cli.main``,
every option must be one that verb takes (with a value of the right type), a
worker's stage must be in the stage registry, and the options handed through
to a reference extension server (``stovepipe ext git|local-runner``) must be
in that server's own ``--help``, its required ones included. Renaming a verb,
a stage or an option therefore fails the deployment tests.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
import typer.main

from stovepipe.cli.main import app
from stovepipe.runtime.registry import WORKER_NAMES

ROOT: Any = typer.main.get_command(app)
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


class InvalidInvocation(AssertionError):
    """The argument vector is not something ``stovepipe`` accepts; says why."""


@dataclass(frozen=True)
class Invocation:
    """A parsed invocation: the verb path, the leaf's parameters, and what it hands through."""

    path: tuple[str, ...]
    params: Mapping[str, Any]
    passthrough: tuple[str, ...]

    @property
    def verb(self) -> str:
        return " ".join(self.path)


def parse(argv: Sequence[str]) -> Invocation:
    """Parse ``stovepipe *argv`` without running it; :class:`InvalidInvocation` if it is
    not a real invocation."""
    shown = "stovepipe " + " ".join(argv)
    command = ROOT
    path: list[str] = []
    rest = list(argv)
    while (subcommands := _subcommands(command)) is not None:
        known = ", ".join(sorted(subcommands))
        if not rest or rest[0].startswith("-"):
            raise InvalidInvocation(f"{shown}: a command is missing; choose one of {known}")
        name = rest.pop(0)
        if name not in subcommands:
            raise InvalidInvocation(f"{shown}: no command {name!r}; choose one of {known}")
        path.append(name)
        command = subcommands[name]
    try:
        context = command.make_context(f"stovepipe {' '.join(path)}", rest)
    except typer.TyperException as exc:  # click's usage errors, as Typer ships them
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise InvalidInvocation(f"{shown}: {message}") from None
    invocation = Invocation(tuple(path), dict(context.params), tuple(context.args))
    if invocation.path == ("worker",) and invocation.params["stage"] not in WORKER_NAMES:
        raise InvalidInvocation(
            f"{shown}: {invocation.params['stage']!r} is not a registered stage "
            f"({', '.join(WORKER_NAMES)})"
        )
    if invocation.passthrough:
        _check_passthrough(invocation, shown)
    return invocation


def passthrough_verbs() -> list[tuple[str, ...]]:
    """Every verb that hands its arguments to a server's own parser (``ext git``, ...)."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subcommands = _subcommands(command)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        elif command.context_settings.get("ignore_unknown_options"):
            found.append(path)

    walk(ROOT, ())
    return found


def _subcommands(command: Any) -> dict[str, Any] | None:
    """A group's commands by name; ``None`` for a leaf command."""
    commands = getattr(command, "commands", None)
    return dict(commands) if commands is not None else None


@functools.cache
def server_options(path: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The options the server behind ``stovepipe *path`` accepts, and those it requires,
    read from its own ``--help`` (handed through after ``--``)."""
    done = subprocess.run(
        [sys.executable, "-m", "stovepipe.cli.main", *path, "--", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"stovepipe {' '.join(path)} -- --help: {done.stderr}"
    usage = done.stdout.split("\n\n", 1)[0]
    required: set[str] = set()
    depth = 0
    for token in re.split(r"(\[|\])", usage):
        if token == "[":
            depth += 1
        elif token == "]":
            depth -= 1
        elif depth == 0:
            required.update(_OPTION.findall(token))
    return frozenset(_OPTION.findall(done.stdout)), frozenset(required)


def _check_passthrough(invocation: Invocation, shown: str) -> None:
    accepted, required = server_options(invocation.path)
    given = {arg.split("=", 1)[0] for arg in invocation.passthrough if arg.startswith("--")}
    unknown = sorted(given - accepted)
    if unknown:
        raise InvalidInvocation(
            f"{shown}: `stovepipe {invocation.verb}` has no option {', '.join(unknown)}"
        )
    missing = sorted(required - given)
    if missing:
        raise InvalidInvocation(f"{shown}: {', '.join(missing)} is required")


def option_value(invocation: Invocation, option: str) -> str | None:
    """The value given to a handed-through ``option`` (``--listen``), if any."""
    args = list(invocation.passthrough)
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None
