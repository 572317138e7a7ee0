"""Validation of the names a caller hands SourceControl: branches and sources.

Shared by every implementation so they reject the same inputs with the same
words. Branch names follow ``git check-ref-format --branch``, which makes them
safe to pass to git as arguments (none starts with ``-``).
"""

from __future__ import annotations

import re

from stovepipe.extensions.sourcecontrol.errors import InvalidArgument
from stovepipe.extensions.sourcecontrol.model import QueueSource

MAX_BRANCH_LENGTH = 255
_HEADS = "refs/heads/"
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def branch_name(ref: str, *, what: str = "ref") -> str:
    """The short branch name for ``main`` or ``refs/heads/main``; ``InvalidArgument``
    for anything git would not accept as a branch (tags and other refs included)."""
    name = ref.removeprefix(_HEADS)
    problem = _branch_problem(name)
    if problem is None and ref.startswith("refs/") and not ref.startswith(_HEADS):
        problem = "only branches (refs/heads/...) can be followed or promoted"
    if problem is not None:
        raise InvalidArgument(f"{what} {quoted(ref)} is not a usable branch name: {problem}")
    return name


def queue_branch(source: QueueSource) -> str:
    """The validated branch of a source, after checking it names a repository at all."""
    if not source.repository:
        raise InvalidArgument(f"queue {quoted(source.queue)}: the source has no repository")
    return branch_name(source.ref, what=f"queue {quoted(source.queue)}: ref")


def _branch_problem(name: str) -> str | None:
    checks = (
        (not name, "it is empty"),
        (len(name) > MAX_BRANCH_LENGTH, f"it is longer than {MAX_BRANCH_LENGTH} characters"),
        (name in {"@", "HEAD"}, "it is reserved by git"),
        (name.startswith("-"), "it starts with '-'"),
        (bool(_FORBIDDEN.search(name)), "it contains a space, a control or a special character"),
        (".." in name or "@{" in name, "it contains '..' or '@{'"),
        (name.startswith("/") or name.endswith("/") or "//" in name, "it has an empty component"),
        (name.endswith("."), "it ends with '.'"),
        (
            any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")),
            "a component starts with '.' or ends with '.lock'",
        ),
    )
    return next((problem for failed, problem in checks if failed), None)


def quoted(value: str, limit: int = 120) -> str:
    """``value`` quoted for a message, cut short so a hostile input cannot flood a log."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
