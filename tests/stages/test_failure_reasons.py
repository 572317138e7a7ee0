"""A red verdict names the targets that broke, on the Request and on its fact."""

from __future__ import annotations

import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.domain import RequestState
from stovepipe.extensions.buildrunner.fake import Outcome, TargetScript
from stovepipe.extensions.buildrunner.model import TargetState
from stovepipe.storage import Store

pytestmark = pytest.mark.postgres

Q = "mono/main"
TARGETS = [
    {"name": "unit", "command": "true"},
    {"name": "lint", "command": "true"},
    {"name": "docs", "command": "true"},
]


async def test_a_failed_verdict_names_its_failed_and_timed_out_targets(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q, build={"targets": TARGETS})])
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(
        uri,
        Outcome(
            targets={
                "unit": TargetScript(state=TargetState.FAILED, exit_code=2),
                "lint": TargetScript(state=TargetState.SUCCEEDED),
                "docs": TargetScript(state=TargetState.TIMED_OUT),
            }
        ),
    )
    request_id = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain()
    request = await store.get_request(request_id)
    assert request is not None and request.state is RequestState.FAILED
    assert "targets unit (exit 2), docs (timed out) failed" in request.reason
    assert "lint" not in request.reason
    fact = await store.get_fact(Q, uri, "")
    assert fact is not None and "unit (exit 2)" in fact.reason
