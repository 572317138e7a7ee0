"""``stovepipe status``'s per-project view: every scope's verdict of one commit, as a table.

Kept apart from the client commands so the commands only plumb ``--project`` through.
A project without a fact shows *not yet known*: a gate treats that as not green.
"""

from __future__ import annotations

from collections.abc import Sequence

from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import types_pb2

WHOLE = "(whole repository)"


def _origin(origin: int) -> str:
    return types_pb2.FactOrigin.Name(origin).removeprefix("FACT_ORIGIN_").lower()  # type: ignore[arg-type]


def verdict_row(scope: pb.ProjectGreenness) -> tuple[str, str, str, str, str]:
    """(scope, verdict, degree, origin, detail) for one scope of a commit."""
    name = scope.project or WHOLE
    if scope.status != pb.GREENNESS_STATUS_RECORDED:
        return name, "not yet known", "-", "-", "no fact yet (absence is not green)"
    fact = scope.fact
    verdict = "green" if fact.degree == 0.0 else "broken"
    detail = f"from {fact.inherited_from_uri}" if fact.inherited_from_uri else fact.reason
    return name, verdict, f"{fact.degree:g}", _origin(fact.origin), detail


def project_rows(scopes: Sequence[pb.ProjectGreenness]) -> list[tuple[str, str, str, str, str]]:
    """One row per scope: the whole repository first, then each configured project."""
    return [verdict_row(scope) for scope in scopes]
