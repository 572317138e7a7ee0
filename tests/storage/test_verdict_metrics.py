"""Each recorded fact is counted once in ``stovepipe_verdicts_total`` by its own scope and
origin, so an operator can tell inherited project verdicts and fail-closed ones from built
ones, and the ingest→verdict histogram is not a mix of whole-repository and project
verdicts. Counted in storage: the insert happens once per fact, whoever writes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.storage import AlreadyExists, Store

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
QUEUE = "metrics/main"


def _verdicts(project: str, result: str, origin: str) -> float:
    labels = {"queue": QUEUE, "project": project, "result": result, "origin": origin}
    return REGISTRY.get_sample_value("stovepipe_verdicts_total", labels) or 0.0


def _fact(uri: str, project: str, degree: float, origin: FactOrigin) -> ValidationFact:
    return ValidationFact(
        queue=QUEUE,
        uri=uri,
        project=project,
        degree=degree,
        request_id=f"request/{QUEUE}/1",
        origin=origin,
        created_at=NOW,
    )


async def test_a_fact_is_counted_once_by_scope_result_and_origin(store: Store) -> None:
    uri = f"git:{uuid.uuid4().hex}"
    facts = [
        _fact(uri, "", 0.5, FactOrigin.BUILD),
        _fact(uri, "web", 0.0, FactOrigin.INHERITED),
        _fact(uri, "api", 1.0, FactOrigin.BUILD),
        _fact(uri, "lib", 1.0, FactOrigin.FAIL_CLOSED),
    ]
    keys = [
        ("", "red", "build"),
        ("web", "green", "inherited"),
        ("api", "red", "build"),
        ("lib", "red", "fail_closed"),
    ]
    before = [_verdicts(*key) for key in keys]
    for fact in facts:
        await store.create_fact(fact)
    with pytest.raises(AlreadyExists):  # a redelivery: refused, not counted again
        await store.create_fact(facts[1])
    after = [_verdicts(*key) for key in keys]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1.0, 1.0, 1.0, 1.0]
    assert _verdicts("web", "green", "build") == 0.0  # inherited is not "build"
