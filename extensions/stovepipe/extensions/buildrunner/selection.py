"""Which targets an incremental build runs.

Target paths are gitignore-style patterns (``pathspec.GitIgnoreSpec``): ``docs/``
matches everything under any ``docs`` directory, ``/src/**`` only the top-level
``src``, ``*.md`` a Markdown file anywhere, and a later ``!pattern`` excludes
again. We chose gitignore semantics over ``fnmatch`` because everyone who
writes CI path filters already knows them, and ``fnmatch``'s ``*`` crosses
directory boundaries in surprising ways.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pathspec

from stovepipe.extensions.buildrunner.errors import InvalidTrigger
from stovepipe.extensions.buildrunner.model import TargetSpec


def compile_paths(target: TargetSpec) -> pathspec.GitIgnoreSpec:
    """The target's patterns, compiled; ``InvalidTrigger`` names a pattern that is not one."""
    try:
        return pathspec.GitIgnoreSpec.from_lines(target.paths)
    except (re.error, ValueError, TypeError) as exc:
        raise InvalidTrigger(f"target {target.name!r}: bad path pattern: {exc}") from None


def should_run(target: TargetSpec, changed_paths: Sequence[str] | None) -> bool:
    """``changed_paths`` of ``None`` means a full build (or changes unknown): run everything.

    A target without paths always runs; otherwise one changed path must match.
    """
    if changed_paths is None or not target.paths:
        return True
    spec = compile_paths(target)
    return any(spec.match_file(path) for path in changed_paths)
