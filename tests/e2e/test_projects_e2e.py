"""Phase 2 end to end: per-project facts, inheritance, project-scoped builds, bookmarks,
promotion refs, queries and events, on the real broker, PostgreSQL, git and builds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from harness.live import Live, live_stack
from harness.projects_repo import (
    ALL_GREEN,
    BREAK_API,
    TOTAL,
    TOUCH_API,
    TOUCH_WEB_README,
    WEIGHTS,
    Step,
    queue_options,
)
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import types_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.postgres]

QUEUE = "e2e/main"
BUILD = types_pb2.FACT_ORIGIN_BUILD
INHERITED = types_pb2.FACT_ORIGIN_INHERITED


async def _step(live: Live, step: Step) -> types_pb2.Request:
    live.repo.commit(step.files, step.title)
    ingest = await live.ingest()
    assert not ingest.duplicate
    return await live.wait_terminal(ingest.request_id, timeout_s=180)


async def _fact(live: Live, uri: str, project: str = "") -> types_pb2.ValidationFact:
    response = await live.stub.GetGreenness(
        pb.GetGreennessRequest(queue=QUEUE, uri=uri, project=project)
    )
    assert response.status == pb.GREENNESS_STATUS_RECORDED, (project, uri)
    fact: types_pb2.ValidationFact = response.fact
    return fact


async def _last_green(live: Live, project: str) -> str:
    response = await live.stub.GetLastGreen(pb.GetLastGreenRequest(queue=QUEUE, project=project))
    return str(response.uri) if response.found else ""


async def _project_builds(live: Live, request_id: str) -> dict[str, str]:
    """project -> status of the project-scoped builds of a Request."""
    found = {}
    for project in WEIGHTS:
        build = await live.store.latest_project_build(QUEUE, request_id, project)
        if build is not None:
            found[project] = build.status.value
    return found


async def test_break_only_api_is_api_weight_share_and_moves_only_green_bookmarks(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, **queue_options()
    ) as live:
        green = await _step(live, ALL_GREEN)
        for project in ("", *WEIGHTS):
            fact = await _fact(live, green.uri, project)
            assert (fact.degree, fact.origin) == (0.0, BUILD), project
        await until(lambda: live.repo.revision("verified-api") is not None, what="api promoted")

        broken = await _step(live, BREAK_API)
        assert broken.state == types_pb2.REQUEST_STATE_FAILED
        whole = await _fact(live, broken.uri)
        assert whole.degree == pytest.approx(WEIGHTS["api"] / TOTAL)
        api = await _fact(live, broken.uri, "api")
        assert (api.degree, api.origin) == (1.0, BUILD)
        for project in ("web", "lib"):
            fact = await _fact(live, broken.uri, project)
            assert (fact.degree, fact.origin) == (0.0, INHERITED), project
            assert fact.inherited_from_uri == green.uri
        # An incremental build that already answers for every project needs no project build.
        assert await _project_builds(live, broken.id) == {}

        assert await _last_green(live, "web") == broken.uri
        assert await _last_green(live, "api") == green.uri
        assert await _last_green(live, "") == green.uri
        await until(
            lambda: live.repo.revision("verified-web") == live.repo.revision("main"), what="web"
        )
        assert live.repo.revision("verified-api") not in (None, live.repo.revision("main"))

        table = await live.stub.GetProjectGreenness(
            pb.GetProjectGreennessRequest(queue=QUEUE, uri=broken.uri)
        )
        assert [(s.project, s.fact.degree) for s in table.scopes] == [
            ("", whole.degree),
            ("web", 0.0),
            ("api", 1.0),
            ("lib", 0.0),
        ]
        listed = await live.stub.ListFacts(pb.ListFactsRequest(queue=QUEUE, project="api"))
        assert [f.uri for f in listed.facts] == [broken.uri, green.uri]


async def test_unknown_project_is_invalid_argument_naming_the_configured_ones(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, **queue_options()
    ) as live:
        calls = [
            live.stub.GetLastGreen(pb.GetLastGreenRequest(queue=QUEUE, project="mobile")),
            live.stub.GetGreenness(
                pb.GetGreennessRequest(queue=QUEUE, uri="git:x", project="mobile")
            ),
            live.stub.ListFacts(pb.ListFactsRequest(queue=QUEUE, project="mobile")),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "web, api, lib" in (caught.value.details() or "")
        stream = live.stub.WatchEvents(pb.WatchEventsRequest(projects=["mobile"]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_without_inheritance_an_unaffected_project_gets_its_own_build(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    async with live_stack(
        tmp_path,
        kafka_bootstrap,
        migrated_pg_url,
        kafka=live_kafka,
        **queue_options(inherit_unaffected=False),
    ) as live:
        await _step(live, ALL_GREEN)
        touched = await _step(live, TOUCH_API)
        # api-test ran in the incremental build and answers for api; web-test and
        # lib-test were skipped, so web and lib each get a project-scoped build.
        assert await _project_builds(live, touched.id) == {
            "web": "succeeded",
            "lib": "succeeded",
        }
        for project in ("web", "api", "lib"):
            fact = await _fact(live, touched.uri, project)
            assert (fact.degree, fact.origin, fact.inherited_from_uri) == (0.0, BUILD, ""), project
        assert (await _fact(live, touched.uri)).degree == 0.0


async def test_change_under_a_project_is_never_inherited(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, **queue_options()
    ) as live:
        first = await _step(live, ALL_GREEN)
        readme = await _step(live, TOUCH_WEB_README)
        web = await _fact(live, readme.uri, "web")
        assert (web.degree, web.origin) == (0.0, BUILD)
        assert await _project_builds(live, readme.id) == {"web": "succeeded"}
        for project in ("api", "lib"):
            fact = await _fact(live, readme.uri, project)
            assert (fact.origin, fact.inherited_from_uri) == (INHERITED, first.uri)


async def test_events_one_verdict_per_project(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, **queue_options()
    ) as live:
        await _step(live, ALL_GREEN)
        stream = live.stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE], projects=["api"]))
        received: list[pb.WatchEventsResponse] = []

        async def read_one() -> None:
            async for item in stream:
                if item.ready:  # the stream's first answer: subscribed, no event yet
                    continue
                received.append(item)
                return

        reader = asyncio.create_task(read_one())
        try:
            for i in range(20):  # the feed joins its consumer group in the background
                request = await _step(live, Step(f"api {i}", {"api/notes": f"{i}\n"}))
                done, _ = await asyncio.wait({reader}, timeout=2.0)
                if done:
                    break
            assert received, "no api event arrived"
            event = received[0].event
            assert event.data.project == "api" and event.data.green
            assert event.data.origin == BUILD
            assert event.data.request_id.startswith(f"request/{QUEUE}/")
            assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
        finally:
            reader.cancel()
            stream.cancel()
