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

import contextlib
import functools
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
import typer.main

from stovepipe.cli.main import app
from stovepipe.runtime.registry import ALL, STAGE_NAMES

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
    if invocation.path == ("worker",) and invocation.params["stage"] == ALL:
        raise InvalidInvocation(
            f"{shown}: a deployment runs one process per stage, so that each scales and "
            "restarts alone; `worker all` is for one machine"
        )
    if invocation.path == ("worker",) and invocation.params["stage"] not in STAGE_NAMES:
        raise InvalidInvocation(
            f"{shown}: {invocation.params['stage']!r} is not a registered stage "
            f"({', '.join(STAGE_NAMES)})"
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


def verbs_serving_metrics() -> list[str]:
    """Every verb that takes ``--metrics-port``: the processes that serve /metrics."""
    found: list[str] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subcommands = _subcommands(command)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        elif any(param.name == "metrics_port" for param in command.params):
            found.append(" ".join(path))

    walk(ROOT, ())
    return found


def _subcommands(command: Any) -> dict[str, Any] | None:
    """A group's commands by name; ``None`` for a leaf command."""
    commands = getattr(command, "commands", None)
    return dict(commands) if commands is not None else None


@functools.cache
def server_options(path: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The options the server behind ``stovepipe *path`` accepts, and those it requires,
    read from its own ``--help`` (handed through after ``--``).

    The CLI runs in this process (the server's parser prints its help and exits
    before serving anything): four interpreters importing the package cost minutes
    on a loaded machine, more than a test's time bound.
    """
    shown = f"stovepipe {' '.join(path)} -- --help"
    out = io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out):
        try:
            ROOT.main(args=[*path, "--", "--help"], prog_name="stovepipe", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
    assert code in (0, None), f"{shown}: exit {code}\n{out.getvalue()}"
    help_text = out.getvalue()
    assert help_text.startswith("usage:"), f"{shown} printed no usage: {help_text[:200]!r}"
    usage = help_text.split("\n\n", 1)[0]
    required: set[str] = set()
    depth = 0
    for token in re.split(r"(\[|\])", usage):
        if token == "[":
            depth += 1
        elif token == "]":
            depth -= 1
        elif depth == 0:
            required.update(_OPTION.findall(token))
    return frozenset(_OPTION.findall(help_text)), frozenset(required)


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
