"""An in-process ProjectMapper for tests: the reference attribution, plus failure injection."""

from __future__ import annotations

from stovepipe.extensions.projectmapper.mapping import map_projects
from stovepipe.extensions.projectmapper.model import MapInput, ProjectImpact


class FakeProjectMapper:
    """Answers like the reference server; ``fail_with`` makes every call raise it."""

    def __init__(self) -> None:
        self.calls: list[MapInput] = []
        self.fail_with: BaseException | None = None

    async def map(self, request: MapInput) -> tuple[ProjectImpact, ...]:
        self.calls.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return map_projects(request)
