"""``depends_on``: a new green of an upstream Queue ingests its dependents (trigger upstream)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness.ingress import Ingress, commit, ingress_stack, make_repo, queue
from stovepipe.domain import Request
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.e2e]


async def _triggered_by(live: Ingress, upstream_uri: str) -> Request | None:
    for request in await live.requests_of("monorepo/main"):
        if dict(request.trigger_details).get("upstream_uri") == upstream_uri:
            return request
    return None


async def _collect(stream: Any, into: list[topics_pb2.HookEvent]) -> None:
    async for response in stream:
        if response.HasField("event"):  # the first response only says the stream is ready
            into.append(response.event)


async def test_a_new_green_upstream_ingests_the_dependent_and_a_broken_one_does_not(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    tools = make_repo(tmp_path / "tools")
    mono = make_repo(tmp_path / "monorepo")
    qs = [
        queue("tools/main", tools.path),
        queue("monorepo/main", mono.path, depends_on=["tools/main"]),
    ]
    async with ingress_stack(tmp_path, kafka_bootstrap, migrated_pg_url, qs) as live:
        events: list[topics_pb2.HookEvent] = []
        stream = live.stub.WatchEvents(pb.WatchEventsRequest(queues=["monorepo/main"]))
        watching = asyncio.create_task(_collect(stream, events))

        # tools/main green: monorepo/main is ingested without anyone calling Ingest for it
        ingest = await live.stub.Ingest(pb.IngestRequest(queue="tools/main", trigger="manual"))
        green = await live.wait_terminal(ingest.request_id)
        assert green.state == types_pb2.REQUEST_STATE_SUCCEEDED
        dependent = await until(
            lambda: _triggered_by(live, green.uri), timeout_s=60, what="monorepo ingested"
        )
        assert dependent.trigger == "upstream"
        assert dict(dependent.trigger_details) == {
            "upstream_queue": "tools/main",
            "upstream_uri": green.uri,
            "upstream_request_id": green.id,
        }
        assert [(g.queue, g.uri) for g in dependent.upstream_greens] == [("tools/main", green.uri)]

        # its verdict records the upstream green it was built against, so does its event
        done = await live.wait_terminal(dependent.id)
        assert done.trigger == "upstream"
        greenness = await live.stub.GetGreenness(
            pb.GetGreennessRequest(queue="monorepo/main", uri=done.uri)
        )
        assert [(g.queue, g.uri, g.request_id) for g in greenness.fact.upstream_greens] == [
            ("tools/main", green.uri, green.id)
        ]
        event = await until(lambda: events[:1], timeout_s=60, what="monorepo's event")
        assert event[0].data.trigger == "upstream"
        assert event[0].data.trigger_details["upstream_uri"] == green.uri
        assert [g.uri for g in event[0].data.upstream_greens] == [green.uri]

        # tools/main broken: nothing is triggered. The dependent's head moves meanwhile, so
        # a trigger would show as a new Request; the next green proves the broken event
        # was read (one partition: events are handled in order) and triggered nothing.
        commit(mono, green=True)
        commit(tools, green=False)
        ingest = await live.stub.Ingest(pb.IngestRequest(queue="tools/main", trigger="manual"))
        broken = await live.wait_terminal(ingest.request_id)
        assert broken.state == types_pb2.REQUEST_STATE_FAILED
        commit(tools, green=True)
        ingest = await live.stub.Ingest(pb.IngestRequest(queue="tools/main", trigger="manual"))
        fixed = await live.wait_terminal(ingest.request_id)
        assert fixed.state == types_pb2.REQUEST_STATE_SUCCEEDED
        await until(
            lambda: _triggered_by(live, fixed.uri), timeout_s=60, what="monorepo ingested again"
        )
        assert await _triggered_by(live, broken.uri) is None
        upstream = await live.requests_of("monorepo/main")
        assert [dict(r.trigger_details)["upstream_uri"] for r in upstream] == [
            green.uri,
            fixed.uri,
        ]
        watching.cancel()
