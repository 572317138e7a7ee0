"""How many database transactions one head costs, from ingest to its recorded fact.

The common path: a green head that builds incrementally after the last green
one, nothing waiting, no projects, a promotion ref. The count is taken with the
pool's own events on real storage, so a change that adds a transaction to a
stage step shows here as a failing count. It was 32 before stage steps ran in
units (``Store.unit``), then 14; issue 14's goal is 8. What is left is one
transaction on each side of an RPC: process (IsAncestor), build (Trigger) and
buildsignal (Status) read before their call and write after it, and record
reads the Queue again right before Promote and notes the promotion after it
(``doc/rfc/performance.md``). A transaction is not held across an RPC.
"""

from __future__ import annotations

import pytest

from harness.db_round_trips import counting
from harness.stages import Pipeline, queue_config
from stovepipe.domain import RequestState
from stovepipe.storage import Store

pytestmark = pytest.mark.postgres

Q = "mono/main"
MAX_TRANSACTIONS_PER_HEAD = 10
"""ingest 1, process 2, build 2, buildsignal 2, record 3."""


@pytest.fixture
def pipe(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q)])


async def test_one_green_head_costs_at_most_ten_transactions(pipe: Pipeline) -> None:
    pipe.repo().advance("main", {"src/a.py": "1"}, title="first")
    await pipe.ingester.ingest(Q, "test")
    await pipe.drain()  # the Queue exists and has a last green commit
    pipe.repo().advance("main", {"src/a.py": "2"}, title="second")

    with counting(pipe.store) as trips:
        request_id = (await pipe.ingester.ingest(Q, "test")).request.id
        await pipe.drain()

    request = await pipe.store.get_request(request_id)
    assert request is not None and request.state is RequestState.SUCCEEDED
    explain = "\n".join(trips.log)
    assert trips.transactions <= MAX_TRANSACTIONS_PER_HEAD, explain
