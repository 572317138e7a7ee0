"""The config-driven attribution the reference server and the fake share.

A project's targets are the graph's targets whose name matches one of its
patterns (shell-style, ``fnmatch`` case-sensitive: target names are
identifiers, not paths). Its verdict: broken when one of them failed or timed
out (a cancelled target says nothing about the code: the runner or an operator
stopped it); green when at least one ran and passed and every other
one passed too or was skipped; otherwise *not yet known*. A skipped target is
one an incremental build left out because nothing it covers changed since the
Queue's last green commit (where every target passed); a target that never
ran to an end (pending, running, absent) says nothing, and absence is never
green. A project none of whose targets ran is therefore not yet known.

A project is affected by a change when a changed file matches its path globs
(gitignore-style, as target paths are) or when one of its targets ran in the
build (the runner ran it because of the change).
"""

from __future__ import annotations

import fnmatch
import re

import pathspec

from stovepipe.extensions.projectmapper.errors import InvalidMapInput
from stovepipe.extensions.projectmapper.model import (
    MapInput,
    ProjectImpact,
    ProjectSpec,
    ProjectVerdict,
    TargetResult,
)

PASSED = frozenset({"succeeded"})
SKIPPED = frozenset({"skipped"})
BROKE = frozenset({"failed", "timed_out"})
RAN = PASSED | BROKE
MAX_PROJECTS = 1000
MAX_TARGETS = 100_000
MAX_CHANGED_FILES = 1_000_000


def map_projects(request: MapInput) -> tuple[ProjectImpact, ...]:
    """One impact per project of ``request``, in its order; ``InvalidMapInput`` on bad input."""
    _check(request)
    return tuple(_impact(project, request) for project in request.projects)


def _check(request: MapInput) -> None:
    if len(request.projects) > MAX_PROJECTS:
        raise InvalidMapInput(f"{len(request.projects)} projects; the limit is {MAX_PROJECTS}")
    if len(request.targets) > MAX_TARGETS:
        raise InvalidMapInput(f"{len(request.targets)} targets; the limit is {MAX_TARGETS}")
    if len(request.changed_files) > MAX_CHANGED_FILES:
        raise InvalidMapInput(f"{len(request.changed_files)} changed files; too many")
    names = [p.name for p in request.projects]
    if any(not n for n in names):
        raise InvalidMapInput("a project has no name")
    if len(set(names)) != len(names):
        raise InvalidMapInput("project names repeat")
    for project in request.projects:
        if not project.target_patterns:
            raise InvalidMapInput(f"project {project.name!r} has no target patterns")


def _impact(project: ProjectSpec, request: MapInput) -> ProjectImpact:
    mine = [t for t in request.targets if _owns(project, t)]
    states = {t.state for t in mine}
    if states & BROKE:
        verdict = ProjectVerdict.BROKEN
    elif states & PASSED and states <= PASSED | SKIPPED:
        verdict = ProjectVerdict.GREEN
    else:
        verdict = ProjectVerdict.NOT_YET_KNOWN
    touched = _paths(project).match_files(request.changed_files) if project.paths else ()
    affected = any(True for _ in touched) or any(t.state in RAN for t in mine)
    return ProjectImpact(
        project=project.name,
        targets=tuple(t.name for t in mine),
        affected=affected,
        verdict=verdict,
    )


def _owns(project: ProjectSpec, target: TargetResult) -> bool:
    return any(fnmatch.fnmatchcase(target.name, p) for p in project.target_patterns)


def _paths(project: ProjectSpec) -> pathspec.GitIgnoreSpec:
    try:
        return pathspec.GitIgnoreSpec.from_lines(project.paths)
    except (re.error, ValueError, TypeError) as exc:
        raise InvalidMapInput(f"project {project.name!r}: bad path glob: {exc}") from None
