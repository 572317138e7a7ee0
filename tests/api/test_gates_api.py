"""The read side a deploy job gates on, over real gRPC on both storage backends.

Commits by SHA (full or a unique prefix), supersession named, durable Request
transitions, paged history, Queue summaries, reachability of the last green
commit after a force-push, WaitForGreenness (polling path; the event-feed path
and its caps are in ``test_event_feed.py``), and the ingest role following its
own Requests.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from harness.api import Q, ServedApi, status_of
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

pytestmark = pytest.mark.postgres


def _sha(uri: str) -> str:
    return uri.rpartition("@")[2]


async def _green_head(served: ServedApi, content: str) -> str:
    served.pipe.repo().advance("main", {"src/a.py": content})
    uri: str = (await served.stub.Ingest(pb.IngestRequest(queue=Q, trigger="test"))).uri
    await served.pipe.drain()
    return uri


async def test_a_commit_is_found_by_its_full_sha_or_a_unique_prefix(served: ServedApi) -> None:
    uri = await _green_head(served, "1")
    sha = _sha(uri)
    for given in (uri, sha, sha[:7], sha[:12].upper()):
        answer = await served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=given))
        assert answer.status == pb.GREENNESS_STATUS_RECORDED, given
        assert answer.uri == uri and answer.fact.degree == 0.0
        assert answer.request.state == types_pb2.REQUEST_STATE_SUCCEEDED


async def test_a_sha_never_ingested_is_not_recorded_and_says_so(served: ServedApi) -> None:
    await _green_head(served, "1")
    answer = await served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri="0" * 40))
    assert answer.status == pb.GREENNESS_STATUS_NOT_RECORDED
    assert answer.uri == "" and not answer.HasField("request")


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("abc12", "at least 7 hex digits"),
        ("a" * 65, "at most 64 hex digits"),
        ("main", "neither a commit URI"),
        ("HEAD~1", "neither a commit URI"),
    ],
)
async def test_what_is_neither_a_uri_nor_a_usable_sha_is_refused(
    served: ServedApi, given: str, says: str
) -> None:
    error = await status_of(served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=given)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in (error.details() or "")


async def test_an_ambiguous_prefix_is_refused_with_the_number_of_candidates(
    served: ServedApi,
) -> None:
    now = datetime.now(UTC)
    for tail in ("1111", "2222", "3333"):
        uri = f"fake+0123456789abcdef#main@abcdef0{tail}{'0' * 29}"
        await served.store.create_request(Q, uri, trigger="test", now=now)
    for call in (
        served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri="abcdef0")),
        served.stub.Revalidate(pb.RevalidateRequest(queue=Q, uri="abcdef0")),
        served.stub.WaitForGreenness(pb.WaitForGreennessRequest(queue=Q, uri="abcdef0")).read(),
    ):
        error = await status_of(call)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "matches 3 ingested commits" in (error.details() or "")
    unique = await served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri="abcdef02222"))
    assert unique.uri.endswith("@abcdef02222" + "0" * 29)


async def test_revalidate_takes_a_sha(served: ServedApi) -> None:
    uri = served.pipe.sc.uri(
        served.pipe.source(), served.pipe.repo().advance("main", {"src/a.py": "1"})
    )
    served.pipe.runner.script(uri, Outcome.fail("unit"))
    await served.stub.Ingest(pb.IngestRequest(queue=Q))
    await served.pipe.drain()
    again = await served.stub.Revalidate(
        pb.RevalidateRequest(queue=Q, uri=_sha(uri)[:10], flaky=True, reason="flake?")
    )
    assert again.request.uri == uri and again.request.attempt == 2
    missing = await status_of(served.stub.Revalidate(pb.RevalidateRequest(queue=Q, uri="f" * 40)))
    assert missing.code() is grpc.StatusCode.NOT_FOUND


async def test_a_superseded_head_names_the_head_that_superseded_it(served: ServedApi) -> None:
    pipe = served.pipe
    pipe.repo().advance("main", {"src/a.py": "1"})
    first = await served.stub.Ingest(pb.IngestRequest(queue=Q))
    pipe.repo().advance("main", {"src/a.py": "2"})
    second = await served.stub.Ingest(pb.IngestRequest(queue=Q))
    await pipe.drain()
    answer = await served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=first.uri))
    assert answer.status == pb.GREENNESS_STATUS_NOT_RECORDED
    assert answer.request.state == types_pb2.REQUEST_STATE_SUPERSEDED
    assert answer.request.superseded_by == second.request_id
    assert answer.request.superseded_by_uri == second.uri
    waited = [
        a
        async for a in served.stub.WaitForGreenness(
            pb.WaitForGreennessRequest(queue=Q, uri=first.uri), timeout=30
        )
    ]
    assert len(waited) == 1 and waited[0].final
    assert waited[0].request.superseded_by == second.request_id


async def test_a_request_lists_its_transitions_with_times(served: ServedApi) -> None:
    uri = await _green_head(served, "1")
    request_id = (
        await served.stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=uri))
    ).request.id
    shown = (await served.stub.GetRequest(pb.GetRequestRequest(request_id=request_id))).request
    states = [t.state for t in shown.transitions]
    assert states == [
        types_pb2.REQUEST_STATE_ACCEPTED,
        types_pb2.REQUEST_STATE_PROCESSING,
        types_pb2.REQUEST_STATE_SUCCEEDED,
    ]
    times = [t.at.ToDatetime() for t in shown.transitions]
    assert times == sorted(times) and all(t.year > 2000 for t in times)
    assert shown.transitions[-1].at == shown.updated_at


async def test_list_requests_pages_newest_first_without_repeats(served: ServedApi) -> None:
    ids = []
    for i in range(5):
        served.pipe.repo().advance("main", {"src/a.py": str(i)})
        ids.append((await served.stub.Ingest(pb.IngestRequest(queue=Q))).request_id)
        await served.pipe.drain()
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await served.stub.ListRequests(
            pb.ListRequestsRequest(queue=Q, page_size=2, page_token=token)
        )
        pages += 1
        seen.extend(e.request.id for e in page.entries)
        assert all(e.fact.degree == 0.0 and e.HasField("fact") for e in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids)) and pages == 3
    forged = await status_of(
        served.stub.ListRequests(pb.ListRequestsRequest(queue=Q, page_token="bm90LWEtdG9rZW4"))
    )
    assert forged.code() is grpc.StatusCode.INVALID_ARGUMENT
    project = await status_of(
        served.stub.ListRequests(pb.ListRequestsRequest(queue=Q, project="web"))
    )
    assert project.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "has no project 'web'" in (project.details() or "")


async def test_list_queues_counts_waiting_and_names_the_last_green(served: ServedApi) -> None:
    uri = await _green_head(served, "1")
    served.pipe.repo().advance("main", {"src/a.py": "2"})
    waiting = await served.stub.Ingest(pb.IngestRequest(queue=Q))  # not drained: accepted
    (summary,) = (await served.stub.ListQueues(pb.ListQueuesRequest())).queues
    assert summary.queue == Q
    assert summary.last_green_uri == uri and summary.last_green_at.seconds > 0
    assert summary.waiting == 1 and summary.in_flight == 0
    assert summary.latest_request_id == waiting.request_id
    assert not summary.stale and not summary.HasField("stale_since")  # never judged
    since = datetime.now(UTC)
    assert await served.store.turn_staleness(Q, True, since)
    (summary,) = (await served.stub.ListQueues(pb.ListQueuesRequest())).queues
    assert summary.stale and summary.stale_since.seconds == int(since.timestamp())
    assert await served.store.turn_staleness(Q, False, since + timedelta(minutes=5))
    (summary,) = (await served.stub.ListQueues(pb.ListQueuesRequest())).queues
    assert not summary.stale and summary.stale_since.seconds == int(since.timestamp()) + 300


async def test_last_green_says_when_a_force_push_dropped_it_and_on_branch_skips_it(
    served: ServedApi,
) -> None:
    pipe = served.pipe
    base = pipe.repo().advance("main", {"src/a.py": "base"})
    await _green_head(served, "kept")
    dropped_uri = await _green_head(served, "dropped")
    last = await served.stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q))
    assert last.uri == dropped_uri and last.reachable == pb.REACHABILITY_ON_BRANCH
    pipe.repo().force_push("main", base)  # drops both later commits
    pipe.repo().advance("main", {"src/b.py": "new"})
    # on_branch resolves the head for the call, although a plain answer just cached it
    on_branch = await served.stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q, on_branch=True))
    assert not on_branch.found and on_branch.bookmark_off_branch  # base was never validated
    last = await served.stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q))
    assert last.uri == dropped_uri and last.reachable == pb.REACHABILITY_OFF_BRANCH


async def test_on_branch_returns_the_newest_green_commit_still_on_the_branch(
    served: ServedApi,
) -> None:
    pipe = served.pipe
    kept_uri = await _green_head(served, "kept")
    kept = _sha(kept_uri)
    dropped_uri = await _green_head(served, "dropped")
    pipe.repo().force_push("main", kept)
    pipe.repo().advance("main", {"src/b.py": "after the rewrite"})
    plain = await served.stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q))
    assert plain.uri == dropped_uri and plain.reachable == pb.REACHABILITY_OFF_BRANCH
    on_branch = await served.stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q, on_branch=True))
    assert on_branch.found and on_branch.uri == kept_uri
    assert on_branch.reachable == pb.REACHABILITY_ON_BRANCH and on_branch.bookmark_off_branch


async def test_wait_for_greenness_answers_at_once_then_with_the_verdict(
    served: ServedApi,
) -> None:
    served.pipe.repo().advance("main", {"src/a.py": "1"})
    uri = (await served.stub.Ingest(pb.IngestRequest(queue=Q))).uri
    stream = served.stub.WaitForGreenness(
        pb.WaitForGreennessRequest(queue=Q, uri=_sha(uri)[:8]), timeout=60
    )
    first = await stream.read()
    assert first.status == pb.GREENNESS_STATUS_NOT_RECORDED and not first.final
    assert first.uri == uri and first.request.state == types_pb2.REQUEST_STATE_ACCEPTED
    await served.pipe.drain()
    answers = [first]
    while not answers[-1].final:
        answers.append(await stream.read())
    assert answers[-1].status == pb.GREENNESS_STATUS_RECORDED
    assert answers[-1].fact.degree == 0.0
    assert await stream.read() is grpc.aio.EOF  # type: ignore[attr-defined]


async def test_wait_for_greenness_ends_at_the_callers_deadline(served: ServedApi) -> None:
    served.pipe.repo().advance("main", {"src/a.py": "1"})
    uri = (await served.stub.Ingest(pb.IngestRequest(queue=Q))).uri  # never drained
    stream = served.stub.WaitForGreenness(pb.WaitForGreennessRequest(queue=Q, uri=uri), timeout=1)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for _answer in stream:
            pass
    assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # the server is still answering after the abandoned stream
    await asyncio.wait_for(served.stub.Ping(pb.PingRequest()), 30)


async def test_an_ingest_token_follows_its_requests_but_reads_no_verdicts(
    served: ServedApi,
) -> None:
    api = StovepipeApi(
        served.store, served.pipe.config, served.pipe.ingester, served.pipe.revalidator
    )
    server = await serve_api(api, "127.0.0.1:0", tokens={"tok-ingest": "ingest"})
    channel = grpc.aio.insecure_channel(server.address)
    stub = pb_grpc.StovepipeServiceStub(channel)
    md = (("authorization", "Bearer tok-ingest"),)
    try:
        served.pipe.repo().advance("main", {"src/a.py": "1"})
        ingested = await stub.Ingest(pb.IngestRequest(queue=Q), metadata=md)
        followed = await stub.GetRequest(
            pb.GetRequestRequest(request_id=ingested.request_id), metadata=md
        )
        assert followed.request.uri == ingested.uri
        for call in (
            stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=ingested.uri), metadata=md),
            stub.ListRequests(pb.ListRequestsRequest(queue=Q), metadata=md),
            stub.Revalidate(pb.RevalidateRequest(queue=Q, uri=ingested.uri), metadata=md),
        ):
            assert (await status_of(call)).code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close(None)
        await server.stop(0)
