"""CAS loops on per-project bookmark rows, and the per-project facts of a commit.

The same shape as ``queue_ops``: reload, decide, write with a version check,
retry a lost race a bounded number of times, and do nothing when the effect is
already there, so redelivery is harmless.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from stovepipe.config import ProjectConfig
from stovepipe.domain import GREEN, FactOrigin, ProjectBookmark, ValidationFact, is_newer
from stovepipe.failures import Retryable
from stovepipe.stages.ports import Clock
from stovepipe.storage import Store, VersionMismatch

MAX_CAS_ATTEMPTS = 20


async def _update(
    store: Store,
    queue: str,
    project: str,
    clock: Clock,
    change: Callable[[ProjectBookmark], ProjectBookmark | None],
) -> ProjectBookmark:
    for _ in range(MAX_CAS_ATTEMPTS):
        current = await store.ensure_project_bookmark(queue, project, now=clock())
        wanted = change(current)
        if wanted is None:
            return current
        try:
            return await store.update_project_bookmark(current, wanted)
        except VersionMismatch:
            continue
    raise Retryable(f"project {queue}/{project}: lost {MAX_CAS_ATTEMPTS} version races in a row")


async def advance_bookmark(
    store: Store, queue: str, project: str, request_id: str, uri: str, clock: Clock
) -> ProjectBookmark:
    """Move the project's bookmark to ``uri`` unless a newer Request already holds it.

    Called only once the green project fact is durable; forward only, by ingest order.
    """

    def change(b: ProjectBookmark) -> ProjectBookmark | None:
        if b.last_green_request_id == request_id:
            return None
        if not is_newer(request_id, b.last_green_request_id):
            return None
        return b.evolve(now=clock(), last_green_uri=uri, last_green_request_id=request_id)

    return await _update(store, queue, project, clock, change)


async def note_promoted(
    store: Store, queue: str, project: str, uri: str, clock: Clock
) -> ProjectBookmark:
    """Remember that the project's promotion ref is at ``uri`` while it is the bookmark."""

    def change(b: ProjectBookmark) -> ProjectBookmark | None:
        if b.last_green_uri != uri or b.promoted_uri == uri:
            return None
        return b.evolve(now=clock(), promoted_uri=uri)

    return await _update(store, queue, project, clock, change)


def whole_repo_degree(
    projects: Sequence[ProjectConfig], facts: Sequence[ValidationFact]
) -> tuple[float, FactOrigin, str]:
    """The whole-repository verdict from one fact per project.

    ``degree = sum(weight of broken projects) / sum(weight of all projects)``:
    0 when every project is green, 1 when every one is broken; a partially
    broken project (degree d) counts d of its weight. ``fail_closed`` when a
    project's fact is, so an operator can re-validate; ``build`` otherwise.
    """
    by_name = {f.project: f for f in facts}
    total = sum(p.weight for p in projects)
    broken = sum(p.weight * by_name[p.name].degree for p in projects)
    # A broken share too small for a float is still not green.
    degree = 0.0 if broken == 0 else min(1.0, max(broken / total, sys.float_info.min))
    failed_closed = any(by_name[p.name].origin is FactOrigin.FAIL_CLOSED for p in projects)
    names = [p.name for p in projects if by_name[p.name].degree != GREEN]
    reason = f"broken projects: {', '.join(names)}" if names else "every project green"
    return degree, (FactOrigin.FAIL_CLOSED if failed_closed else FactOrigin.BUILD), reason
