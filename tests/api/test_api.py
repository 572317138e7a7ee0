"""The public API over real gRPC, with storage on both backends and fake extensions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.storage import Store
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

pytestmark = pytest.mark.postgres
Q = "mono/main"


@pytest.fixture
async def api(store: Store) -> AsyncIterator[tuple[Any, Pipeline]]:
    pipe = Pipeline(store, [queue_config(Q)])
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator), "127.0.0.1:0"
    )
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield pb_grpc.StovepipeServiceStub(channel), pipe
    finally:
        await channel.close(None)
        await server.stop(0)


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    code: grpc.StatusCode = exc.value.code()
    return code


async def test_errors_map_to_codes_a_caller_can_act_on(api: tuple[Any, Pipeline]) -> None:
    stub, _ = api
    assert (
        await _code(stub.Ingest(pb.IngestRequest(queue="other/main"))) == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await _code(stub.Ingest(pb.IngestRequest(queue="Bad Name")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code(stub.GetRequest(pb.GetRequestRequest(request_id="nope")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    missing = stub.GetRequest(pb.GetRequestRequest(request_id=f"request/{Q}/99"))
    assert await _code(missing) == grpc.StatusCode.NOT_FOUND
    no_uri = stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=""))
    assert await _code(no_uri) == grpc.StatusCode.INVALID_ARGUMENT
    bad_project = stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q, project="nope"))
    assert await _code(bad_project) == grpc.StatusCode.INVALID_ARGUMENT
    no_branch = stub.Ingest(pb.IngestRequest(queue=Q))  # the fake repository has no main yet
    assert await _code(no_branch) == grpc.StatusCode.FAILED_PRECONDITION


async def test_not_recorded_is_not_degree_zero(api: tuple[Any, Pipeline]) -> None:
    stub, pipe = api
    pipe.repo().advance("main", {"src/a.py": "1"})
    ingest = await stub.Ingest(pb.IngestRequest(queue=Q, trigger="test"))
    before = await stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=ingest.uri))
    assert before.status == pb.GREENNESS_STATUS_NOT_RECORDED
    assert not (await stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q))).found
    await pipe.drain()
    after = await stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=ingest.uri))
    assert after.status == pb.GREENNESS_STATUS_RECORDED
    assert after.fact.degree == 0.0 and after.fact.origin == types_pb2.FACT_ORIGIN_BUILD
    last = await stub.GetLastGreen(pb.GetLastGreenRequest(queue=Q))
    assert last.found and last.uri == ingest.uri and last.request_id == ingest.request_id
    request = (await stub.GetRequest(pb.GetRequestRequest(request_id=ingest.request_id))).request
    assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
    assert request.build_strategy == types_pb2.BUILD_STRATEGY_FULL
    duplicate = await stub.Ingest(pb.IngestRequest(queue=Q, trigger="test"))
    assert duplicate.duplicate and duplicate.request_id == ingest.request_id


async def test_list_facts_pages(api: tuple[Any, Pipeline]) -> None:
    stub, pipe = api
    for i in range(3):
        await pipe.store.create_fact(
            ValidationFact(
                queue=Q,
                uri=f"u{i}",
                project="",
                degree=float(i % 2),
                request_id=f"request/{Q}/{i + 1}",
                origin=FactOrigin.BUILD,
                created_at=datetime(2026, 1, 1, i, tzinfo=UTC),
            )
        )
    first = await stub.ListFacts(pb.ListFactsRequest(queue=Q, page_size=2))
    second = await stub.ListFacts(
        pb.ListFactsRequest(queue=Q, page_size=2, page_token=first.next_page_token)
    )
    assert [f.uri for f in [*first.facts, *second.facts]] == ["u2", "u1", "u0"]
    assert second.next_page_token == ""
    bad = stub.ListFacts(pb.ListFactsRequest(queue=Q, page_token="garbage"))
    assert await _code(bad) == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_and_token_roles(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q)])
    tokens = {"ingest-secret": "ingest", "read-secret": "read"}
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator),
        "127.0.0.1:0",
        tokens=tokens,
    )
    channel = grpc.aio.insecure_channel(server.address)
    try:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="stovepipe.v1.StovepipeService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.StovepipeServiceStub(channel)
        request = pb.GetLastGreenRequest(queue=Q)
        assert await _code(stub.GetLastGreen(request)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer ingest-secret"),)
        assert (
            await _code(stub.GetLastGreen(request, metadata=wrong))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        right = (("authorization", "Bearer read-secret"),)
        assert not (await stub.GetLastGreen(request, metadata=right)).found
    finally:
        await channel.close(None)
        await server.stop(0)


async def test_revalidate_over_the_wire(api: tuple[Any, Pipeline]) -> None:
    from stovepipe.extensions.buildrunner.fake import Outcome

    stub, pipe = api
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": "1"}))
    pipe.runner.script(uri, Outcome.errored("runner lost the checkout"))
    ingested = await stub.Ingest(pb.IngestRequest(queue=Q, trigger="test"))
    await pipe.drain()
    call = pb.RevalidateRequest(queue=Q, uri=uri, reason="runner redeployed")
    pipe.runner.script(uri, Outcome.succeed())
    started = await stub.Revalidate(call)
    assert (started.request.id, started.request.attempt) == (ingested.request_id, 2)
    assert started.request.state == types_pb2.REQUEST_STATE_ACCEPTED
    assert not started.already_in_flight
    assert (await stub.Revalidate(call)).already_in_flight
    await pipe.drain()
    answer = await stub.GetGreenness(pb.GetGreennessRequest(queue=Q, uri=uri))
    assert answer.fact.degree == 0.0 and answer.fact.attempt == 2
    assert [(f.attempt, f.origin) for f in answer.attempts] == [
        (1, types_pb2.FACT_ORIGIN_FAIL_CLOSED),
        (2, types_pb2.FACT_ORIGIN_BUILD),
    ]
    refused = stub.Revalidate(pb.RevalidateRequest(queue=Q, uri=uri, flaky=True))
    assert await _code(refused) == grpc.StatusCode.FAILED_PRECONDITION  # green is final
    unknown = stub.Revalidate(pb.RevalidateRequest(queue=Q, uri="git:nowhere#1"))
    assert await _code(unknown) == grpc.StatusCode.NOT_FOUND
    empty = stub.Revalidate(pb.RevalidateRequest(queue=Q))
    assert await _code(empty) == grpc.StatusCode.INVALID_ARGUMENT


async def test_revalidate_needs_the_admin_role(store: Store) -> None:
    pipe = Pipeline(store, [queue_config(Q)])
    tokens = {"ingest-secret": "ingest", "read-secret": "read", "admin-secret": "admin"}
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator),
        "127.0.0.1:0",
        tokens=tokens,
    )
    channel = grpc.aio.insecure_channel(server.address)
    try:
        stub = pb_grpc.StovepipeServiceStub(channel)
        call = pb.RevalidateRequest(queue=Q, uri="git:nowhere#1")
        for token in ("ingest-secret", "read-secret"):
            md = (("authorization", f"Bearer {token}"),)
            assert await _code(stub.Revalidate(call, metadata=md)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        admin = (("authorization", "Bearer admin-secret"),)
        assert await _code(stub.Revalidate(call, metadata=admin)) == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close(None)
        await server.stop(0)
