"""The public gRPC API, ``stovepipe.v1.StovepipeService``.

Requests reach these methods decoded and bounded (``stovepipe.api.edge``); what
is left here is whether the named Queue, project or commit exists, and the call.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Protocol

import grpc

from stovepipe.api import convert
from stovepipe.api.auth import TokenAuthInterceptor
from stovepipe.api.edge import RequestGuard
from stovepipe.api.errors import guarded, guarded_stream
from stovepipe.api.telemetry import ApiTelemetry
from stovepipe.domain import InvalidInput, RequestId, validate_queue_name
from stovepipe.grpcutil import GrpcServer, start_server
from stovepipe.stages import HeadIngester, Revalidator
from stovepipe.stages.ports import QueueDirectory
from stovepipe.storage import Store
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StovepipeService"].full_name
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
PER_PROJECT_UNSUPPORTED = (
    "per-project greenness is not supported yet; leave project empty for the whole repository"
)

Context = grpc.aio.ServicerContext[object, object]


class EventFeed(Protocol):
    """A live feed of recorded events; each subscriber gets its own iterator.

    ``owner`` identifies the caller for the per-caller cap on open streams; the
    feed raises ``TooManySubscribers`` (a ``RuntimeError``) beyond it."""

    def subscribe(self, owner: str = "") -> AsyncIterator[topics_pb2.HookEvent]: ...


class ApiQueues(QueueDirectory, Protocol):
    """The configured Queues, by name, and their names."""

    @property
    def queue_names(self) -> tuple[str, ...]: ...


class StovepipeApi(pb_grpc.StovepipeServiceServicer):
    """Thin translation between the wire and the stages/storage; no logic of its own."""

    def __init__(
        self,
        store: Store,
        queues: ApiQueues,
        ingester: HeadIngester,
        revalidator: Revalidator,
        events: EventFeed | None = None,
    ) -> None:
        self._store = store
        self._queues = queues
        self._ingester = ingester
        self._revalidator = revalidator
        self._events = events

    async def Ping(self, request: pb.PingRequest, context: Context) -> pb.PingResponse:
        return pb.PingResponse(
            version=version("stovepipe"), server_time=convert.timestamp(datetime.now(UTC))
        )

    async def Ingest(self, request: pb.IngestRequest, context: Context) -> pb.IngestResponse:
        async def call() -> pb.IngestResponse:
            result = await self._ingester.ingest(request.queue, request.trigger)
            return pb.IngestResponse(
                request_id=result.request.id, duplicate=result.duplicate, uri=result.request.uri
            )

        return await guarded(context, call)

    async def GetRequest(
        self, request: pb.GetRequestRequest, context: Context
    ) -> pb.GetRequestResponse:
        async def call() -> pb.GetRequestResponse:
            rid = RequestId.parse(request.request_id)
            self._queues.queue(rid.queue)
            found = await self._store.get_request(str(rid))
            if found is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no request {rid}")
            assert found is not None
            return pb.GetRequestResponse(request=convert.request_to_pb(found))

        return await guarded(context, call)

    async def GetLastGreen(
        self, request: pb.GetLastGreenRequest, context: Context
    ) -> pb.GetLastGreenResponse:
        async def call() -> pb.GetLastGreenResponse:
            self._check_scope(request.queue, request.project)
            found = await self._store.get_last_green(request.queue)
            if found is None:
                return pb.GetLastGreenResponse(found=False)
            queue, fact = found
            if not queue.last_green_uri or not queue.last_green_request_id:
                return pb.GetLastGreenResponse(found=False)
            return pb.GetLastGreenResponse(
                found=True,
                uri=queue.last_green_uri,
                request_id=queue.last_green_request_id,
                fact=convert.fact_to_pb(fact) if fact else None,
            )

        return await guarded(context, call)

    async def GetGreenness(
        self, request: pb.GetGreennessRequest, context: Context
    ) -> pb.GetGreennessResponse:
        async def call() -> pb.GetGreennessResponse:
            self._check_scope(request.queue, request.project)
            if not request.uri:
                raise InvalidInput("uri is empty; pass the commit URI returned by Ingest")
            fact = await self._store.get_fact(request.queue, request.uri, request.project)
            if fact is None:
                return pb.GetGreennessResponse(status=pb.GREENNESS_STATUS_NOT_RECORDED)
            attempts = await self._store.list_fact_attempts(
                request.queue, request.uri, request.project
            )
            return pb.GetGreennessResponse(
                status=pb.GREENNESS_STATUS_RECORDED,
                fact=convert.fact_to_pb(fact),
                attempts=[convert.fact_to_pb(f) for f in attempts],
            )

        return await guarded(context, call)

    async def ListFacts(
        self, request: pb.ListFactsRequest, context: Context
    ) -> pb.ListFactsResponse:
        async def call() -> pb.ListFactsResponse:
            self._check_scope(request.queue, request.project)
            if request.page_size < 0:
                raise InvalidInput("page_size must not be negative")
            size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            facts, token = await self._store.list_facts(
                request.queue, request.project, page_size=size, page_token=request.page_token
            )
            return pb.ListFactsResponse(
                facts=[convert.fact_to_pb(f) for f in facts], next_page_token=token
            )

        return await guarded(context, call)

    async def GetBuildLog(
        self, request: pb.GetBuildLogRequest, context: Context
    ) -> pb.GetBuildLogResponse:
        async def call() -> pb.GetBuildLogResponse:
            rid = RequestId.parse(request.request_id)
            self._queues.queue(rid.queue)
            if await self._store.get_request(str(rid)) is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no request {rid}")
            logs = await self._store.list_build_logs(str(rid), request.target)
            return pb.GetBuildLogResponse(
                logs=[
                    pb.TargetLog(
                        target=entry.target,
                        attempt=entry.attempt,
                        build_id=entry.build_id,
                        content=entry.content,
                        truncated=entry.truncated,
                        created_at=convert.timestamp(entry.created_at),
                    )
                    for entry in logs
                ]
            )

        return await guarded(context, call)

    async def Revalidate(
        self, request: pb.RevalidateRequest, context: Context
    ) -> pb.RevalidateResponse:
        async def call() -> pb.RevalidateResponse:
            result = await self._revalidator.revalidate(
                request.queue, request.uri, flaky=request.flaky, reason=request.reason
            )
            return pb.RevalidateResponse(
                request=convert.request_to_pb(result.request),
                already_in_flight=result.already_in_flight,
            )

        return await guarded(context, call)

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async def check() -> None:
            for queue in request.queues:
                validate_queue_name(queue)
                self._queues.queue(queue)
            self._check_projects(request.queues, request.projects)

        await guarded(context, check)
        if self._events is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server has no event feed")
            return
        queues, projects = set(request.queues), set(request.projects)

        async def matching() -> AsyncIterator[pb.WatchEventsResponse]:
            assert self._events is not None
            async for event in self._events.subscribe(_caller(context)):
                if queues and event.data.queue not in queues:
                    continue
                if projects and event.data.project not in projects:
                    continue
                yield pb.WatchEventsResponse(event=event)

        async for item in guarded_stream(context, matching()):
            yield item

    def _check_scope(self, queue: str, project: str) -> None:
        """The Queue must exist; a project must be one of its own, and is not served yet."""
        validate_queue_name(queue)
        self._queues.queue(queue)
        if project:
            raise InvalidInput(
                f"queue {queue} has no project {project!r}: {PER_PROJECT_UNSUPPORTED}; "
                "ask about the whole repository (no project)"
            )

    def _check_projects(self, queues: Iterable[str], projects: Iterable[str]) -> None:
        """No Queue has projects while per-project verdicts are not supported."""
        for name in queues:
            self._queues.queue(name)
        for project in projects:
            raise InvalidInput(
                f"no watched queue has project {project!r}: {PER_PROJECT_UNSUPPORTED}"
            )


def _caller(context: Context) -> str:
    """Who is calling, for per-caller limits: a digest of the bearer token, else the peer host.

    The token itself is never kept or logged."""
    metadata = dict(context.invocation_metadata() or ())
    token = str(metadata.get("authorization", ""))
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    peer = context.peer() or ""
    return "peer:" + peer.rsplit(":", 1)[0]


async def serve_api(
    api: StovepipeApi,
    address: str,
    *,
    tokens: Mapping[str, str] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, int]] = (),
) -> GrpcServer:
    """Start the API with health checking, reflection and (optional) token auth.

    ``options`` are grpc server arguments (see :func:`connection_options`).

    Interceptors run in order: metrics (so refusals are counted too), the token
    check, then the request guard, so an unauthenticated caller learns nothing
    about what the API would accept.
    """

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_StovepipeServiceServicer_to_server(api, server)

    interceptors: list[grpc.aio.ServerInterceptor[object, object]] = [RequestGuard()]
    if tokens:
        interceptors.insert(0, TokenAuthInterceptor(tokens))
    interceptors.insert(0, ApiTelemetry())
    return await start_server(
        address,
        [register],
        [SERVICE_NAME],
        interceptors=interceptors,
        credentials=credentials,
        options=options,
    )


def connection_options(
    keepalive_s: float, max_connection_age_s: float, grace_s: float
) -> list[tuple[str, int]]:
    """Server-side keepalive and connection age.

    Keepalive pings find a peer that vanished without closing its connection
    (a gate killed mid-``WatchEvents``), so its stream and its place under the
    stream cap are freed. A maximum connection age sends every client a GOAWAY
    now and then, which spreads clients over API replicas and ends a stream
    that would otherwise live for ever; a watcher reconnects (``0`` turns it off).
    """
    options = [
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", int(max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(grace_s * 1000)),
        ]
    return options
