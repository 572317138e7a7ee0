"""The public gRPC API, ``stovepipe.v1.StovepipeService``.

Requests reach these methods decoded and bounded (``stovepipe.api.edge``); what
is left here is whether the named Queue, project or commit exists, and the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Protocol

import grpc

from stovepipe.api import convert
from stovepipe.api.auth import TokenAuthInterceptor
from stovepipe.api.commits import resolve_commit
from stovepipe.api.edge import RequestGuard
from stovepipe.api.errors import guarded, guarded_stream
from stovepipe.api.gate_cache import Bookmark, GateCache, GateCacheSettings, HeadUnknown
from stovepipe.api.telemetry import ApiTelemetry
from stovepipe.domain import (
    GREEN,
    InvalidInput,
    NotFound,
    Request,
    RequestId,
    RequestState,
    validate_queue_name,
)
from stovepipe.extensions.sourcecontrol.model import Ancestry
from stovepipe.grpcutil import GrpcServer, start_server
from stovepipe.hooks.redeliver import redeliver
from stovepipe.stages import HeadIngester, Revalidator
from stovepipe.stages.ports import QueueDirectory
from stovepipe.storage import HookDelivery, HookDeliveryStatus, Store
from stovepipe.storage.hook_deliveries import parse_delivery_id
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2, types_pb2

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StovepipeService"].full_name
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
MAX_REDELIVER = 1000
"""At most this many deliveries are put back in line by one ``--failed`` call."""

WAIT_POLL_SECONDS = 2.0
"""How often a WaitForGreenness stream re-reads storage; a matching event wakes it sooner."""
MAX_ON_BRANCH_CHECKS = 50
"""How many green commits ``GetLastGreen(on_branch)`` asks SourceControl about at most."""
_SUPERSEDED_BY = re.compile(r"superseded by (request/\S+)")
_REACH = {
    Ancestry.ANCESTOR: pb.REACHABILITY_ON_BRANCH,
    Ancestry.NOT_ANCESTOR: pb.REACHABILITY_OFF_BRANCH,
    Ancestry.UNKNOWN: pb.REACHABILITY_UNKNOWN,
}

Context = grpc.aio.ServicerContext[object, object]


class FeedItem(Protocol):
    @property
    def event(self) -> topics_pb2.HookEvent | None: ...
    @property
    def cursor(self) -> str: ...


class EventFeed(Protocol):
    """A feed of recorded events; each subscriber gets its own iterator.

    ``owner`` identifies the caller for the per-caller cap on open streams; the
    feed raises ``TooManySubscribers`` (a ``RuntimeError``) beyond it. The first
    item has no event: the stream is ready. ``start`` is empty (from now on),
    ``"beginning"`` or a cursor from an earlier item."""

    def watch(self, owner: str = "", start: str = "") -> AsyncGenerator[FeedItem, None]: ...
    def observe(self, observer: Callable[[str, str], None]) -> None: ...
    def caught_up(self, within_s: float) -> bool: ...


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
        gate_cache: GateCacheSettings | None = None,
    ) -> None:
        self._store = store
        self._queues = queues
        self._ingester = ingester
        self._revalidator = revalidator
        self._events = events
        self.gates = GateCache(store, ingester, events, gate_cache)

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
            wire = await self._request_pb(found)
            wire.transitions.extend(
                types_pb2.RequestTransition(
                    state=convert.state_to_pb(t.state),
                    attempt=t.attempt,
                    reason=t.reason,
                    at=convert.timestamp(t.at),
                )
                for t in await self._store.list_transitions(found.id)
            )
            return pb.GetRequestResponse(request=wire)

        return await guarded(context, call)

    async def GetLastGreen(
        self, request: pb.GetLastGreenRequest, context: Context
    ) -> pb.GetLastGreenResponse:
        async def call() -> pb.GetLastGreenResponse:
            self._check_scope(request.queue, request.project)
            bookmark = await self.gates.bookmark(request.queue, request.project)
            if not bookmark.uri:
                return pb.GetLastGreenResponse(found=False)
            answer = _last_green_answer(bookmark)
            if request.project:
                return answer
            if request.on_branch:
                return await self._last_green_on_branch(request.queue, request.project, answer)
            await self._stamp_reachability(request.queue, answer, strict=False)
            return answer

        return await guarded(context, call)

    async def GetGreenness(
        self, request: pb.GetGreennessRequest, context: Context
    ) -> pb.GetGreennessResponse:
        async def call() -> pb.GetGreennessResponse:
            self._check_scope(request.queue, request.project)
            uri = await resolve_commit(self._store, request.queue, request.uri)
            return await self._greenness(request.queue, uri, request.project, attempts=True)

        return await guarded(context, call)

    async def GetProjectGreenness(
        self, request: pb.GetProjectGreennessRequest, context: Context
    ) -> pb.GetProjectGreennessResponse:
        async def call() -> pb.GetProjectGreennessResponse:
            self._check_scope(request.queue, "")
            if not request.uri:
                raise InvalidInput("uri is empty; pass the commit URI returned by Ingest")
            config = self._queues.queue(request.queue)
            scopes = []
            for project in ("", *config.project_names):
                fact = await self._store.get_fact(request.queue, request.uri, project)
                scopes.append(
                    pb.ProjectGreenness(
                        project=project,
                        status=(
                            pb.GREENNESS_STATUS_RECORDED
                            if fact
                            else pb.GREENNESS_STATUS_NOT_RECORDED
                        ),
                        fact=convert.fact_to_pb(fact) if fact else None,
                    )
                )
            return pb.GetProjectGreennessResponse(scopes=scopes)

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
            self._check_scope(request.queue, request.project)
            uri = await resolve_commit(self._store, request.queue, request.uri)
            if not uri:
                raise NotFound(
                    f"queue {request.queue} has ingested no commit with SHA {request.uri.lower()}"
                )
            result = await self._revalidator.revalidate(
                request.queue,
                uri,
                flaky=request.flaky,
                reason=request.reason,
                project=request.project,
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
        if request.cursor and request.from_beginning:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "give at most one of cursor or from_beginning"
            )
            return
        start = "beginning" if request.from_beginning else request.cursor

        async def matching() -> AsyncIterator[pb.WatchEventsResponse]:
            assert self._events is not None
            async with contextlib.aclosing(self._events.watch(_caller(context), start)) as items:
                async for item in items:
                    event = item.event
                    if event is None:
                        yield pb.WatchEventsResponse(ready=True, cursor=item.cursor)
                        continue
                    if queues and event.data.queue not in queues:
                        continue
                    if projects and event.data.project not in projects:
                        continue
                    yield pb.WatchEventsResponse(event=event, cursor=item.cursor)

        async for item in guarded_stream(context, matching()):
            yield item

    async def ListHookDeliveries(
        self, request: pb.ListHookDeliveriesRequest, context: Context
    ) -> pb.ListHookDeliveriesResponse:
        async def call() -> pb.ListHookDeliveriesResponse:
            if request.queue:
                validate_queue_name(request.queue)
                self._queues.queue(request.queue)
            if request.page_size < 0:
                raise InvalidInput("page_size must not be negative")
            size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            found, token = await self._store.list_hook_deliveries(
                queue=request.queue,
                status=_delivery_state(request.state),
                page_size=size,
                page_token=request.page_token,
            )
            return pb.ListHookDeliveriesResponse(
                deliveries=[convert.hook_delivery_to_pb(d) for d in found],
                next_page_token=token,
            )

        return await guarded(context, call)

    async def GetHookDelivery(
        self, request: pb.GetHookDeliveryRequest, context: Context
    ) -> pb.GetHookDeliveryResponse:
        async def call() -> pb.GetHookDeliveryResponse:
            found = await self._delivery(request.id)
            return pb.GetHookDeliveryResponse(
                delivery=convert.hook_delivery_to_pb(found, with_event=True)
            )

        return await guarded(context, call)

    async def RedeliverHook(
        self, request: pb.RedeliverHookRequest, context: Context
    ) -> pb.RedeliverHookResponse:
        async def call() -> pb.RedeliverHookResponse:
            if bool(request.id) == request.all_failed:
                raise InvalidInput("give either a delivery id or all_failed")
            if request.queue:
                validate_queue_name(request.queue)
                self._queues.queue(request.queue)
            if request.id:
                targets = [await self._delivery(request.id)]
            else:
                targets = []
                token = ""
                while True:
                    page, token = await self._store.list_hook_deliveries(
                        queue=request.queue,
                        status=HookDeliveryStatus.FAILED,
                        page_size=MAX_PAGE_SIZE,
                        page_token=token,
                    )
                    targets.extend(page)
                    if not token or len(targets) >= MAX_REDELIVER:
                        break
            done = [await redeliver(self._store, d) for d in targets[:MAX_REDELIVER]]
            return pb.RedeliverHookResponse(
                deliveries=[convert.hook_delivery_to_pb(d) for d in done]
            )

        return await guarded(context, call)

    async def _delivery(self, delivery_id: str) -> HookDelivery:
        try:
            queue, event_id, hook = parse_delivery_id(delivery_id)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        validate_queue_name(queue)
        self._queues.queue(queue)
        found = await self._store.get_hook_delivery(queue, event_id, hook)
        if found is None:
            raise NotFound(f"no hook delivery {delivery_id[:600]}")
        return found

    async def WaitForGreenness(
        self, request: pb.WaitForGreennessRequest, context: Context
    ) -> AsyncIterator[pb.WaitForGreennessResponse]:
        """Answers at once, then on every change of the commit's Request, until a verdict.

        Storage is re-read every ``WAIT_POLL_SECONDS`` and whenever the event feed
        serves a verdict for this Queue, so a lost event costs latency, never an
        answer. The stream holds one event-feed subscription, under the same caps
        as ``WatchEvents``, and ends with the caller's deadline.
        """

        async def resolve() -> str:
            self._check_scope(request.queue, request.project)
            return await resolve_commit(self._store, request.queue, request.uri)

        uri = await guarded(context, resolve)

        async def answers() -> AsyncIterator[pb.WaitForGreennessResponse]:
            wake = asyncio.Event()
            pump = self._wake_on_events(request.queue, uri, _caller(context), wake)
            last: bytes | None = None
            try:
                while True:
                    answer = await self._wait_answer(request.queue, uri, request.project)
                    encoded = answer.SerializeToString(deterministic=True)
                    if encoded != last:
                        last = encoded
                        yield answer
                    if answer.final:
                        return
                    wake.clear()
                    waiters = [asyncio.ensure_future(wake.wait())]
                    if pump is not None:
                        waiters.append(pump)  # type: ignore[arg-type]
                    await asyncio.wait(
                        waiters, timeout=WAIT_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiters[0].cancel()
                    if pump is not None and pump.done():
                        pump.result()  # raises what ended the feed (caps, a slow reader)
                        pump = None
            finally:
                if pump is not None:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump

        async for item in guarded_stream(context, answers()):
            yield item

    async def ListRequests(
        self, request: pb.ListRequestsRequest, context: Context
    ) -> pb.ListRequestsResponse:
        async def call() -> pb.ListRequestsResponse:
            self._check_scope(request.queue, request.project)
            size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            page, token = await self._store.page_requests(
                request.queue, page_size=size, page_token=request.page_token
            )
            entries = []
            facts = await self._store.get_facts(
                request.queue, [found.uri for found in page], request.project
            )
            for found in page:
                fact = facts.get(found.uri)
                entries.append(
                    pb.HistoryEntry(
                        request=await self._request_pb(found),
                        fact=convert.fact_to_pb(fact) if fact else None,
                    )
                )
            return pb.ListRequestsResponse(entries=entries, next_page_token=token)

        return await guarded(context, call)

    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: Context
    ) -> pb.ListQueuesResponse:
        async def call() -> pb.ListQueuesResponse:
            summaries = []
            staleness = await self._store.list_staleness()
            for name in self._queues.queue_names:
                state = await self._store.get_queue(name)
                counts = await self._store.count_requests_by_state(name)
                summary = pb.QueueSummary(
                    queue=name,
                    in_flight=counts.get(RequestState.PROCESSING, 0)
                    + counts.get(RequestState.ANALYZING, 0),
                    waiting=counts.get(RequestState.ACCEPTED, 0),
                )
                if name in staleness:
                    summary.stale, since = staleness[name]
                    summary.stale_since.CopyFrom(convert.timestamp(since))
                if state is not None:
                    summary.latest_request_id = state.latest_request_id or ""
                    summary.promoted_ref = state.promoted_ref or ""
                    summary.promoted_uri = state.promoted_uri or ""
                    if state.last_green_uri and state.last_green_request_id:
                        summary.last_green_uri = state.last_green_uri
                        summary.last_green_request_id = state.last_green_request_id
                        fact = await self._store.get_fact(name, state.last_green_uri, "")
                        if fact is not None:
                            summary.last_green_at.CopyFrom(convert.timestamp(fact.created_at))
                summaries.append(summary)
            return pb.ListQueuesResponse(queues=summaries)

        return await guarded(context, call)

    async def _greenness(
        self, queue: str, uri: str, project: str, *, attempts: bool
    ) -> pb.GetGreennessResponse:
        """The verdict of ``uri`` (``""``: a SHA never ingested) and its newest Request."""
        answer = pb.GetGreennessResponse(status=pb.GREENNESS_STATUS_NOT_RECORDED, uri=uri)
        if not uri:
            return answer
        found = await self._store.find_request(queue, uri)
        if found is not None:
            answer.request.CopyFrom(await self._request_pb(found))
        fact = await self._store.get_fact(queue, uri, project)
        if fact is None:
            return answer
        answer.status = pb.GREENNESS_STATUS_RECORDED
        answer.fact.CopyFrom(convert.fact_to_pb(fact))
        if attempts:
            answer.attempts.extend(
                convert.fact_to_pb(f)
                for f in await self._store.list_fact_attempts(queue, uri, project)
            )
        return answer

    async def _wait_answer(self, queue: str, uri: str, project: str) -> pb.WaitForGreennessResponse:
        known = await self._greenness(queue, uri, project, attempts=False)
        answer = pb.WaitForGreennessResponse(status=known.status, uri=uri)
        if known.HasField("request"):
            answer.request.CopyFrom(known.request)
        if known.status == pb.GREENNESS_STATUS_RECORDED:
            answer.fact.CopyFrom(known.fact)
            answer.final = True
        elif known.HasField("request") and known.request.state in (
            types_pb2.REQUEST_STATE_SUPERSEDED,
            types_pb2.REQUEST_STATE_CANCELLED,
        ):
            answer.final = True
        return answer

    def _wake_on_events(
        self, queue: str, uri: str, owner: str, wake: asyncio.Event
    ) -> asyncio.Task[None] | None:
        """A task that sets ``wake`` on every served event of ``queue``; it ends with the
        feed's error (``TooManySubscribers`` beyond the caps)."""
        if self._events is None:
            return None
        events = self._events

        async def pump() -> None:
            async with contextlib.aclosing(events.watch(owner)) as items:
                async for item in items:
                    event = item.event
                    if event is None:
                        continue
                    if event.data.queue == queue and (not uri or event.data.uri == uri):
                        wake.set()

        return asyncio.create_task(pump(), name=f"wait-for-greenness {queue}")

    async def _request_pb(self, request: Request) -> types_pb2.Request:
        """The wire Request, naming the newer head for a superseded one."""
        wire = convert.request_to_pb(request)
        if request.state is RequestState.SUPERSEDED:
            match = _SUPERSEDED_BY.search(request.reason)
            newer = None
            if match is not None:
                with contextlib.suppress(InvalidInput):
                    newer = await self._store.get_request(match[1])
            if newer is not None:
                wire.superseded_by = newer.id
                wire.superseded_by_uri = newer.uri
        return wire

    async def _stamp_reachability(
        self, queue: str, answer: pb.GetLastGreenResponse, *, strict: bool
    ) -> None:
        """Set ``reachable`` and ``head_uri``; without ``strict`` a SourceControl failure
        reads as UNKNOWN rather than failing the whole answer. ``strict`` (an ``on_branch``
        caller, who deploys on the answer) resolves the head now; otherwise a head up to
        ``GateCacheSettings.head_max_age_s`` old is used (the answer names it)."""
        try:
            head = await self.gates.head(queue, fresh=strict)
            answer.head_uri = head
            answer.reachable = _REACH[await self.gates.ancestry(queue, answer.uri, head)]
        except (grpc.aio.AioRpcError, HeadUnknown):
            if strict:
                raise
            answer.reachable = pb.REACHABILITY_UNKNOWN

    async def _last_green_on_branch(
        self, queue: str, project: str, bookmark: pb.GetLastGreenResponse
    ) -> pb.GetLastGreenResponse:
        """The bookmark when it is on the branch, else the newest green fact that is."""
        await self._stamp_reachability(queue, bookmark, strict=True)
        if bookmark.reachable == pb.REACHABILITY_ON_BRANCH:
            return bookmark
        head = bookmark.head_uri
        facts, _ = await self._store.list_facts(queue, project, page_size=MAX_ON_BRANCH_CHECKS)
        for fact in facts:
            if fact.degree != GREEN or fact.uri == bookmark.uri:
                continue
            if await self.gates.ancestry(queue, fact.uri, head) is Ancestry.ANCESTOR:
                return pb.GetLastGreenResponse(
                    found=True,
                    uri=fact.uri,
                    request_id=fact.request_id,
                    fact=convert.fact_to_pb(fact),
                    reachable=pb.REACHABILITY_ON_BRANCH,
                    head_uri=head,
                    bookmark_off_branch=True,
                )
        return pb.GetLastGreenResponse(found=False, head_uri=head, bookmark_off_branch=True)

    def _check_scope(self, queue: str, project: str) -> None:
        """The Queue must exist; a project must be one of its own (``INVALID_ARGUMENT``
        naming the configured ones otherwise)."""
        validate_queue_name(queue)
        config = self._queues.queue(queue)
        if project and config.project(project) is None:
            raise InvalidInput(
                f"queue {queue} has no project {project!r}; {_configured(config.project_names)}"
            )

    def _check_projects(self, queues: Iterable[str], projects: Iterable[str]) -> None:
        """Every project asked for must be a project of a watched Queue (of any Queue when
        none is named)."""
        watched = [self._queues.queue(name) for name in queues] or [
            self._queues.queue(name) for name in self._queues.queue_names
        ]
        known = sorted({p for q in watched for p in q.project_names})
        for project in projects:
            if project not in known:
                raise InvalidInput(
                    f"no watched queue has project {project!r}; {_configured(tuple(known))}"
                )


def _last_green_answer(bookmark: Bookmark) -> pb.GetLastGreenResponse:
    return pb.GetLastGreenResponse(
        found=True,
        uri=bookmark.uri,
        request_id=bookmark.request_id,
        fact=convert.fact_to_pb(bookmark.fact) if bookmark.fact else None,
    )


def _configured(names: Sequence[str]) -> str:
    if not names:
        return "no project is configured (leave project empty for the whole repository)"
    return f"configured projects: {', '.join(names)}"


def _delivery_state(text: str) -> HookDeliveryStatus | None:
    if not text:
        return None
    try:
        return HookDeliveryStatus(text)
    except ValueError:
        choices = ", ".join(s.value for s in HookDeliveryStatus)
        raise InvalidInput(f"state {text[:50]!r} is not one of {choices}") from None


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
    reuse_port: bool = False,
) -> GrpcServer:
    """Start the API with health checking, reflection and (optional) token auth.

    ``options`` are grpc server arguments (see :func:`connection_options`);
    ``reuse_port`` shares the port with the other processes of an API group.

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
        reuse_port=reuse_port,
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
