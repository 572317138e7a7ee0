"""Phase 1 end to end on the real broker, PostgreSQL, git and subprocess builds."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest

from harness.live import Live, live_stack
from stovepipe.runtime.sample_repo import SANDBOX_PYTHON, STEPS, Step
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.postgres]

QUEUE = "e2e/main"
FULL, INCREMENTAL = types_pb2.BUILD_STRATEGY_FULL, types_pb2.BUILD_STRATEGY_INCREMENTAL


def _commit(live: Live, step: Step) -> str:
    return live.repo.commit(step.files, step.title)


async def _step(live: Live, step: Step) -> types_pb2.Request:
    _commit(live, step)
    ingest = await live.ingest()
    assert not ingest.duplicate
    return await live.wait_terminal(ingest.request_id)


async def _greenness(live: Live, uri: str) -> pb.GetGreennessResponse:
    response: pb.GetGreennessResponse = await live.stub.GetGreenness(
        pb.GetGreennessRequest(queue=QUEUE, uri=uri)
    )
    return response


async def test_green_broken_fixed_then_force_push(live: Live) -> None:
    requests = [await _step(live, step) for step in STEPS]
    live.repo.force_push("main", "HEAD~1")
    rewritten_sha = live.repo.commit(
        {"src/calc.py": "def add(a, b):\n    return b + a\n"}, "fix add() differently"
    )
    rewrite = await live.ingest()
    requests.append(await live.wait_terminal(rewrite.request_id))

    assert [r.state for r in requests] == [
        types_pb2.REQUEST_STATE_SUCCEEDED,
        types_pb2.REQUEST_STATE_FAILED,
        types_pb2.REQUEST_STATE_SUCCEEDED,
        types_pb2.REQUEST_STATE_SUCCEEDED,
    ]
    assert [r.build_strategy for r in requests] == [FULL, INCREMENTAL, INCREMENTAL, FULL]
    assert requests[1].base_uri == requests[0].uri and requests[2].base_uri == requests[0].uri
    degrees = []
    for request in requests:
        greenness = await _greenness(live, request.uri)
        assert greenness.status == pb.GREENNESS_STATUS_RECORDED
        assert greenness.fact.origin == types_pb2.FACT_ORIGIN_BUILD
        degrees.append(greenness.fact.degree)
    assert degrees == [0.0, 1.0, 0.0, 0.0]
    last = await live.stub.GetLastGreen(pb.GetLastGreenRequest(queue=QUEUE))
    assert last.found and last.request_id == requests[3].id and last.uri == requests[3].uri
    await until(lambda: live.repo.revision("verified-main") == rewritten_sha, what="promotion")
    unknown = await _greenness(live, requests[3].uri.replace(rewritten_sha, "0" * 40))
    assert unknown.status == pb.GREENNESS_STATUS_NOT_RECORDED


def _slow_targets(release: Path) -> list[dict[str, object]]:
    wait = f"while [ -f slow ] && [ ! -f {release} ]; do sleep 0.05; done"
    return [
        {
            "name": "unit-tests",
            "command": f"{wait}; {SANDBOX_PYTHON} tests/test_calc.py",
            "timeout_seconds": 120,
        }
    ]


async def test_heads_reported_while_one_builds_are_superseded(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    release = tmp_path / "release"
    async with live_stack(
        tmp_path,
        kafka_bootstrap,
        migrated_pg_url,
        kafka=live_kafka,
        targets=_slow_targets(release),
        sandbox=False,
    ) as live:
        live.repo.commit({**STEPS[0].files, "slow": "1"}, "A")
        first = await live.ingest()
        await until(
            lambda: _is(live, first.request_id, types_pb2.REQUEST_STATE_PROCESSING),
            what="A processing",
        )
        later = []
        for name in "BCDEF":
            live.repo.commit({"slow": None} if name == "B" else {f"notes/{name}": name}, name)
            later.append((await live.ingest()).request_id)
        release.write_text("go")
        final = [await live.wait_terminal(rid) for rid in [first.request_id, *later]]
        assert final[0].state == types_pb2.REQUEST_STATE_SUCCEEDED
        assert final[-1].state == types_pb2.REQUEST_STATE_SUCCEEDED
        assert [r.state for r in final[1:-1]] == [types_pb2.REQUEST_STATE_SUPERSEDED] * 4
        for request in final[1:-1]:
            assert (await _greenness(live, request.uri)).status == pb.GREENNESS_STATUS_NOT_RECORDED


async def _is(live: Live, request_id: str, state: int) -> bool:
    return (await live.request(request_id)).state == state


async def test_re_reported_head_is_deduplicated(live: Live) -> None:
    _commit(live, STEPS[0])
    first = await live.ingest()
    again = await live.ingest()
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.request_id == first.request_id and again.uri == first.uri
    await live.wait_terminal(first.request_id)
    after = await live.ingest()
    assert after.duplicate and after.request_id == first.request_id


async def test_every_stage_message_delivered_twice_has_no_extra_effect(live: Live) -> None:
    request = await _step(live, STEPS[0])
    fact_before = (await _greenness(live, request.uri)).fact
    queue_before = await live.store.get_queue(QUEUE)
    build_before = await live.store.get_build(QUEUE, request.build_id)
    rid, scope = request.id, types_pb2.Scope(project="")
    await live.bus.publish(
        "stovepipe.process", topics_pb2.ProcessMessage(request_id=rid, queue=QUEUE)
    )
    await live.bus.publish(
        "stovepipe.build", topics_pb2.BuildMessage(request_id=rid, queue=QUEUE, scope=scope)
    )
    await live.bus.publish(
        "stovepipe.buildsignal",
        topics_pb2.BuildSignalMessage(
            build_id=request.build_id, request_id=rid, queue=QUEUE, scope=scope
        ),
    )
    await live.bus.publish(
        "stovepipe.record", topics_pb2.RecordMessage(request_id=rid, queue=QUEUE, scope=scope)
    )
    marker = await _step(live, STEPS[1])  # processed after the duplicates on every partition
    assert marker.state == types_pb2.REQUEST_STATE_FAILED
    assert (await _greenness(live, request.uri)).fact == fact_before
    after = await live.request(rid)
    assert (after.state, after.build_id, after.version) == (
        request.state,
        request.build_id,
        request.version,
    )
    assert await live.store.get_build(QUEUE, request.build_id) == build_before
    queue_after = await live.store.get_queue(QUEUE)
    assert queue_before and queue_after
    assert queue_after.last_green_request_id == queue_before.last_green_request_id
    assert queue_after.in_flight_count == 0


async def test_max_concurrent_two_never_runs_more_than_two_builds(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    running, peaks, release = tmp_path / "running", tmp_path / "peaks", tmp_path / "release"
    running.mkdir()
    command = (
        f"touch {running}/$STOVEPIPE_BUILD_ID; ls {running} | wc -l >> {peaks}; "
        f"while [ ! -f {release} ]; do sleep 0.05; done; rm -f {running}/$STOVEPIPE_BUILD_ID"
    )
    targets = [{"name": "hold", "command": command, "timeout_seconds": 120}]
    async with live_stack(
        tmp_path,
        kafka_bootstrap,
        migrated_pg_url,
        kafka=live_kafka,
        targets=targets,
        max_concurrent=2,
        sandbox=False,
    ) as live:
        ids = []
        for i in range(5):
            live.repo.commit({f"f{i}": str(i)}, f"c{i}")
            ids.append((await live.ingest()).request_id)
            if i < 2:
                await until(
                    functools.partial(_is, live, ids[-1], types_pb2.REQUEST_STATE_PROCESSING),
                    what=f"{ids[-1]} admitted",
                )
        await until(
            lambda: peaks.exists() and len(peaks.read_text().split()) >= 2, what="two builds"
        )
        queue = await live.store.get_queue(QUEUE)
        assert queue is not None and queue.in_flight_count == 2
        assert (await live.request(ids[4])).state == types_pb2.REQUEST_STATE_ACCEPTED
        release.write_text("go")
        final = [await live.wait_terminal(rid) for rid in ids]
        assert [r.state for r in final] == [types_pb2.REQUEST_STATE_SUCCEEDED] * 2 + [
            types_pb2.REQUEST_STATE_SUPERSEDED
        ] * 2 + [types_pb2.REQUEST_STATE_SUCCEEDED]
        counts = [int(n) for n in peaks.read_text().split()]
        assert max(counts) == 2, counts
        queue = await live.store.get_queue(QUEUE)
        assert queue is not None and queue.in_flight_count == 0


async def test_runner_down_exhausts_retries_and_fails_closed(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    fast_retries = {"build": {"max_attempts": 2, "backoff_initial_seconds": 0.2}}
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, workers=fast_retries
    ) as live:
        await live.runner.stop()
        _commit(live, STEPS[0])
        ingest = await live.ingest()
        request = await live.wait_terminal(ingest.request_id)
        assert request.state == types_pb2.REQUEST_STATE_FAILED
        assert "fail closed" in request.reason
        greenness = await _greenness(live, request.uri)
        assert greenness.fact.degree == 1.0
        assert greenness.fact.origin == types_pb2.FACT_ORIGIN_FAIL_CLOSED
        assert not (await live.stub.GetLastGreen(pb.GetLastGreenRequest(queue=QUEUE))).found
        queue = await live.store.get_queue(QUEUE)
        assert queue is not None and queue.in_flight_count == 0


async def test_watch_events_streams_recorded_verdicts(live: Live) -> None:
    await _step(live, STEPS[0])
    stream = live.stub.WatchEvents(pb.WatchEventsRequest(queues=[QUEUE]))
    received: list[topics_pb2.HookEvent] = []

    async def read_one() -> None:
        # The first head's events may still be on their way when the stream opens
        # (its Request is terminal before record publishes them), so its transition
        # event can come first; what is asserted is the first verdict event.
        async for response in stream:
            if response.ready:
                continue
            received.append(response.event)
            if response.event.type == "dev.stovepipe.verdict.recorded":
                return

    reader = asyncio.create_task(read_one())
    try:
        for i in range(20):  # the feed joins its consumer group in the background
            live.repo.commit({"src/calc.py": f"def add(a, b):\n    return a + b  # {i}\n"}, f"w{i}")
            request = await live.wait_terminal((await live.ingest()).request_id)
            done, _ = await asyncio.wait({reader}, timeout=2.0)
            if done:
                break
        assert received, "no event arrived"
        event = received[-1]
        assert event.type == "dev.stovepipe.verdict.recorded"
        assert {e.type for e in received[:-1]} <= {"dev.stovepipe.queue.became_green"}
        assert event.data.queue == QUEUE and event.data.green
        assert event.subject == QUEUE and event.data.uri.startswith("git+")
        assert event.data.request_id.startswith(f"request/{QUEUE}/")
        assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
    finally:
        reader.cancel()
        stream.cancel()
