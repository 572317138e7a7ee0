"""Behaviour traps found in review (issue 9, item 4), each pinned by a test.

Every test here fails on the code as it was before its fix.
"""

from __future__ import annotations

import grpc
import pytest
from stage_harness import Pipeline, queue_config

from stovepipe.domain import RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.storage import Store

pytestmark = pytest.mark.postgres

Q = "mono/main"


async def _head(pipe: Pipeline, content: str, outcome: Outcome | None = None) -> str:
    """Push a commit to ``main``, script its build, ingest it; the Request id."""
    commit = pipe.repo().advance("main", {"src/a.py": content}, title=content)
    if outcome is not None:
        pipe.runner.script(pipe.sc.uri(pipe.source(), commit), outcome)
    return (await pipe.ingester.ingest(Q, "poller")).request.id


async def test_a_head_at_a_closed_gate_asks_source_control_nothing(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q, max_concurrent=1)])
    await _head(pipe, "green")
    await pipe.drain()
    await _head(pipe, "long", Outcome.hang("unit"))  # holds the only slot
    await pipe.drain()
    asked = len(pipe.sc.calls_to("is_ancestor"))
    pipe.sc.fail("is_ancestor", grpc.StatusCode.UNAVAILABLE, times=100)

    waiting = await _head(pipe, "waits")
    await pipe.drain(twice=True)  # an RPC here would raise UNAVAILABLE out of process

    request = await store.get_request(waiting)
    assert request and request.state is RequestState.ACCEPTED
    assert len(pipe.sc.calls_to("is_ancestor")) == asked
    assert pipe.outbox.counts[topics.BUILD] == 2  # the waiting head was not admitted
