"""What every runner refuses to start, so the fake and the servers agree."""

from __future__ import annotations

from stovepipe.extensions.buildrunner.errors import InvalidTrigger
from stovepipe.extensions.buildrunner.model import TriggerSpec
from stovepipe.extensions.buildrunner.selection import compile_paths


def validate_trigger(spec: TriggerSpec) -> None:
    """Raise ``InvalidTrigger`` for a trigger that can never produce a meaningful build.

    A build without targets is refused rather than reported green: it would
    claim a commit is good without having checked anything.
    """
    if not spec.head_uri:
        raise InvalidTrigger("head_uri is required")
    if not spec.targets:
        raise InvalidTrigger("a build needs at least one target")
    seen: set[str] = set()
    for target in spec.targets:
        if not target.name:
            raise InvalidTrigger("every target needs a name")
        if target.name in seen:
            raise InvalidTrigger(f"target {target.name!r} is configured twice")
        seen.add(target.name)
        if not target.command.strip():
            raise InvalidTrigger(f"target {target.name!r} has no command")
        if target.timeout_seconds is not None and target.timeout_seconds < 0:
            raise InvalidTrigger(f"target {target.name!r} has a negative timeout")
        compile_paths(target)
