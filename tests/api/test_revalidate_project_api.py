"""``Revalidate`` with a project over real gRPC (storage on both backends, extension fakes):
admin only, an unknown project named against the configured ones, and the Request in
flight (``analyzing``, counted by ``ListQueues``) until the project has its new fact."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.stages import topics
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.storage import Store
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = pytest.mark.postgres
Q = "mono/main"
TARGETS = [{"name": f"{p}-test", "command": "true", "paths": [f"{p}/**"]} for p in ("web", "api")]
PROJECTS = [
    {"name": "web", "paths": ["web/**"], "targets": ["web-*"]},
    {"name": "api", "paths": ["api/**"], "targets": ["api-*"]},
]
TOKENS = {"ingest-secret": "ingest", "read-secret": "read", "admin-secret": "admin"}


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value.code(), exc.value.details() or ""


async def _web_failed_closed(pipe: Pipeline) -> tuple[str, str]:
    """A green root, then an api-only commit whose web build dead-letters."""
    pipe.repo().advance("main", {"web/a": "1", "api/a": "1"}, title="root")
    await pipe.ingester.ingest(Q, "test")
    await pipe.drain()
    root = await pipe.store.get_queue(Q)
    assert root is not None and root.last_green_uri
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"api/a": "2"}, title="api"))
    pipe.runner.set_changed_files(root.last_green_uri, uri, ["api/a"])
    rid = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain(lose=frozenset({topics.BUILD}))  # web's project build never starts
    reconciler = DeadLetterReconciler(
        pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock
    )
    await reconciler.reconcile(
        topics_pb2.BuildMessage(
            request_id=rid, queue=Q, scope=types_pb2.Scope(project="web"), request_attempt=1
        ),
        "runner unavailable",
    )
    await pipe.drain()
    return rid, uri


async def test_revalidate_one_project_over_the_wire(store: Store) -> None:
    pipe = Pipeline(
        store,
        [queue_config(Q, build={"targets": TARGETS}, projects=PROJECTS, inherit_unaffected=False)],
    )
    rid, uri = await _web_failed_closed(pipe)
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator),
        "127.0.0.1:0",
        tokens=TOKENS,
    )
    channel = grpc.aio.insecure_channel(server.address)
    try:
        stub = pb_grpc.StovepipeServiceStub(channel)
        call = pb.RevalidateRequest(queue=Q, uri=uri, project="web", reason="runner back")
        for token in ("ingest-secret", "read-secret"):
            code, _ = await _code(stub.Revalidate(call, metadata=_md(token)))
            assert code is grpc.StatusCode.PERMISSION_DENIED
        admin = _md("admin-secret")
        unknown = pb.RevalidateRequest(queue=Q, uri=uri, project="mobile")
        code, details = await _code(stub.Revalidate(unknown, metadata=admin))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "mobile" in details and "configured projects: web, api" in details
        green = pb.RevalidateRequest(queue=Q, uri=uri, project="api")
        code, details = await _code(stub.Revalidate(green, metadata=admin))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "green is final" in details

        started = await stub.Revalidate(call, metadata=admin)
        assert (started.request.id, started.request.attempt) == (rid, 2)
        assert started.request.state == types_pb2.REQUEST_STATE_ANALYZING
        queues = await stub.ListQueues(pb.ListQueuesRequest(), metadata=admin)
        assert [(q.queue, q.in_flight, q.waiting) for q in queues.queues] == [(Q, 1, 0)]
        waiting = await stub.GetGreenness(
            pb.GetGreennessRequest(queue=Q, uri=uri, project="web"), metadata=admin
        )
        assert waiting.fact.attempt == 1  # the fail-closed fact answers until the new one

        await pipe.drain()
        done = await stub.GetRequest(pb.GetRequestRequest(request_id=rid), metadata=admin)
        assert (done.request.state, done.request.attempt) == (
            types_pb2.REQUEST_STATE_SUCCEEDED,
            2,
        )
        web = await stub.GetGreenness(
            pb.GetGreennessRequest(queue=Q, uri=uri, project="web"), metadata=admin
        )
        assert (web.fact.degree, web.fact.attempt, web.fact.origin) == (
            0.0,
            2,
            types_pb2.FACT_ORIGIN_BUILD,
        )
        whole = await stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=uri), metadata=admin)
        assert (whole.fact.degree, whole.fact.attempt) == (0.0, 2)
        queues = await stub.ListQueues(pb.ListQueuesRequest(), metadata=admin)
        assert queues.queues[0].in_flight == 0
    finally:
        await channel.close(None)
        await server.stop(0)


async def test_wait_for_greenness_follows_an_analyzing_request_to_its_verdict(
    store: Store,
) -> None:
    from stovepipe.stages.sweep import StaleRequestSweeper

    pipe = Pipeline(
        store,
        [queue_config(Q, build={"targets": TARGETS}, projects=PROJECTS, inherit_unaffected=False)],
    )
    pipe.repo().advance("main", {"web/a": "1", "api/a": "1"}, title="root")
    await pipe.ingester.ingest(Q, "test")
    await pipe.drain()
    root = await store.get_queue(Q)
    assert root is not None and root.last_green_uri
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"api/a": "2"}, title="api"))
    pipe.runner.set_changed_files(root.last_green_uri, uri, ["api/a"])
    rid = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain(lose=frozenset({topics.BUILD}))  # web's project build is lost
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator), "127.0.0.1:0"
    )
    channel = grpc.aio.insecure_channel(server.address)
    try:
        stub = pb_grpc.StovepipeServiceStub(channel)
        stream = stub.WaitForGreenness(pb.WaitForGreennessRequest(queue=Q, uri=uri), timeout=120)
        first = await stream.read()
        assert isinstance(first, pb.WaitForGreennessResponse)
        assert first.status == pb.GREENNESS_STATUS_NOT_RECORDED and not first.final
        assert first.request.state == types_pb2.REQUEST_STATE_ANALYZING
        # the sweeper re-drives the Request that stopped moving; analyze rebuilds web
        sweeper = StaleRequestSweeper(store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
        pipe.clock.now += pipe.stale_after * 2
        assert await sweeper.sweep_once(pipe.stale_after) == [rid]
        await pipe.drain()
        last = first
        while not last.final:
            answer = await stream.read()
            assert isinstance(answer, pb.WaitForGreennessResponse), "the stream ended early"
            last = answer
        assert last.final and last.status == pb.GREENNESS_STATUS_RECORDED
        assert last.fact.degree == 0.0
    finally:
        await channel.close(None)
        await server.stop(0)
