"""The git server's allow-list: which repositories it serves, which refs it may move.

A request names its repository, so without a list the server would read any
path on disk and fetch any URL its caller names. It answers only for
repositories on the list and refuses the rest with PERMISSION_DENIED. A
requested repository is matched by its key (the canonical, credential-free
location; see ``location``), and the server then works on the location *as
configured*, never as the caller spelled it: ``..``, a symlinked parent or
credentials in the request cannot lead it anywhere else.

Promote moves a ref only when a configured Queue on that repository follows
the request's branch and promotes to that ref. It never creates any other
branch, and never moves a branch a Queue follows to itself (the backend
refuses that as INVALID_ARGUMENT before the list is consulted).

``served_from_config`` builds the list from ``stovepipe.yaml``: every Queue's
``source.repository``, and its ``(source.ref, promotion_ref)`` pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stovepipe.extensions.sourcecontrol.errors import InvalidArgument, PermissionDenied
from stovepipe.extensions.sourcecontrol.git.location import Location, parse_location
from stovepipe.extensions.sourcecontrol.names import branch_name, quoted

if TYPE_CHECKING:
    from stovepipe.config import StovepipeConfig


@dataclass(frozen=True)
class Promotion:
    """A Queue following ``branch`` may point ``promotion_ref`` at its green commits."""

    branch: str
    promotion_ref: str


@dataclass(frozen=True)
class ServedRepository:
    """One repository on the list, as a path or URL, and the promotions allowed in it."""

    repository: str
    promotions: frozenset[Promotion] = frozenset()


@dataclass(frozen=True)
class _Entry:
    location: Location
    promotions: frozenset[Promotion]


class ServedRepositories:
    """The allow-list; ``ValueError`` at construction for an unusable entry."""

    def __init__(self, repositories: Iterable[ServedRepository]) -> None:
        entries: dict[str, _Entry] = {}
        for served in repositories:
            try:
                location = parse_location(served.repository)
                promotions = frozenset(
                    Promotion(
                        branch_name(p.branch, what="followed ref"),
                        branch_name(p.promotion_ref, what="promotion ref"),
                    )
                    for p in served.promotions
                )
            except InvalidArgument as exc:
                raise ValueError(f"cannot serve {served.repository!r}: {exc}") from None
            known = entries.get(location.key)
            if known is not None:
                location, promotions = known.location, known.promotions | promotions
            entries[location.key] = _Entry(location, promotions)
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> list[str]:
        """One line per repository, safe to log: where it is and what may be promoted."""
        return [
            f"{entry.location.display}"
            + "".join(
                f" [{p.branch} -> {p.promotion_ref}]"
                for p in sorted(entry.promotions, key=lambda p: (p.branch, p.promotion_ref))
            )
            for entry in sorted(self._entries.values(), key=lambda e: e.location.display)
        ]

    def location(self, requested: Location, queue: str) -> Location:
        """The configured location of the repository ``requested`` names;
        ``PermissionDenied`` when it is not on the list."""
        entry = self._entries.get(requested.key)
        if entry is None:
            raise PermissionDenied(
                f"queue {quoted(queue)}: repository {quoted(requested.display)} is not served "
                "here; only the repositories of configured Queues are"
            )
        return entry.location

    def check_promotion(
        self, location: Location, branch: str, promotion_ref: str, queue: str
    ) -> None:
        """``PermissionDenied`` unless a configured Queue following ``branch`` of
        ``location`` promotes to ``promotion_ref``."""
        entry = self._entries.get(location.key)
        allowed = sorted(
            p.promotion_ref for p in (entry.promotions if entry else ()) if p.branch == branch
        )
        if promotion_ref not in allowed:
            configured = ", ".join(quoted(ref) for ref in allowed) or "none"
            raise PermissionDenied(
                f"queue {quoted(queue)}: promotion ref {quoted(promotion_ref)} is not "
                f"configured for branch {quoted(branch)} of {location.display} "
                f"(configured: {configured})"
            )


def served_from_config(config: StovepipeConfig) -> ServedRepositories:
    """Every Queue's repository, with its ``(source.ref, promotion_ref)`` when it has one,
    and one such pair per project promotion ref."""
    return ServedRepositories(
        ServedRepository(
            queue.source.repository,
            frozenset(
                Promotion(queue.source.ref, ref)
                for ref in (queue.promotion_ref, *(p.promotion_ref for p in queue.projects))
                if ref
            ),
        )
        for queue in config.queues
    )


def load_served(path: Path) -> ServedRepositories:
    """``served_from_config`` of the ``stovepipe.yaml`` at ``path`` (environment overrides
    applied, as every other process reads it); ``ValueError`` with every problem."""
    from stovepipe.config import ConfigError, load_config

    try:
        return served_from_config(load_config(path))
    except ConfigError as exc:
        raise ValueError(f"cannot read the Queues to serve:\n{exc}") from None
