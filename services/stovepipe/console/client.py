"""The console's only way to the data: the public ``StovepipeService``, with a ``read`` token.

Every page is built from these calls, never from the database, so the console
shows exactly what any other API client would see and needs no more rights
than one. Lookups of something that may not exist (a Request, a build log, a
hook delivery) answer None for NOT_FOUND; every other refusal is
:class:`ApiUnavailable`, which the pages show as a 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from stovepipe.grpcutil import open_channel
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2, types_pb2

Metadata = tuple[tuple[str, str], ...]

CALL_TIMEOUT_S = 10.0


class ApiUnavailable(RuntimeError):
    """The API refused or could not be reached; the message is safe to show."""


@dataclass(frozen=True)
class Page:
    facts: list[types_pb2.ValidationFact]
    next_token: str


@dataclass(frozen=True)
class RequestPage:
    entries: list[pb.HistoryEntry]
    next_token: str


class ConsoleClient:
    """One channel to the API, the console's token on every call."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        admin_token: str | None = None,
    ) -> None:
        self._channel = open_channel(address, credentials=credentials)
        self._stub: Any = pb_grpc.StovepipeServiceStub(self._channel)
        self._metadata: Metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._admin: Metadata | None = (
            (("authorization", f"Bearer {admin_token}"),) if admin_token else None
        )

    @property
    def can_revalidate(self) -> bool:
        return self._admin is not None

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, method: str, message: Any, metadata: Metadata | None = None) -> Any:
        try:
            return await getattr(self._stub, method)(
                message, metadata=metadata or self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise ApiUnavailable(f"{method}: {exc.code().name}: {exc.details()}") from None

    async def ping(self) -> pb.PingResponse:
        response: pb.PingResponse = await self._call("Ping", pb.PingRequest())
        return response

    async def last_green(self, queue: str, project: str = "") -> pb.GetLastGreenResponse:
        response: pb.GetLastGreenResponse = await self._call(
            "GetLastGreen", pb.GetLastGreenRequest(queue=queue, project=project)
        )
        return response

    async def greenness(self, queue: str, uri: str, project: str = "") -> pb.GetGreennessResponse:
        response: pb.GetGreennessResponse = await self._call(
            "GetGreenness", pb.GetGreennessRequest(queue=queue, uri=uri, project=project)
        )
        return response

    async def facts(
        self, queue: str, *, project: str = "", page_size: int = 50, page_token: str = ""
    ) -> Page:
        response: pb.ListFactsResponse = await self._call(
            "ListFacts",
            pb.ListFactsRequest(
                queue=queue, project=project, page_size=page_size, page_token=page_token
            ),
        )
        return Page(list(response.facts), response.next_page_token)

    async def request(self, request_id: str) -> types_pb2.Request | None:
        """The Request with its transitions, or None when the API knows no such id."""
        response = await self._found("GetRequest", pb.GetRequestRequest(request_id=request_id))
        return None if response is None else response.request

    async def list_requests(
        self, queue: str, *, project: str = "", page_size: int = 50, page_token: str = ""
    ) -> RequestPage:
        """One page of the Queue's Requests, newest first, each with its verdict in ``project``."""
        response: pb.ListRequestsResponse = await self._call(
            "ListRequests",
            pb.ListRequestsRequest(
                queue=queue, project=project, page_size=page_size, page_token=page_token
            ),
        )
        return RequestPage(list(response.entries), response.next_page_token)

    async def list_queues(self) -> dict[str, pb.QueueSummary]:
        """Every configured Queue at a glance, by name."""
        response: pb.ListQueuesResponse = await self._call("ListQueues", pb.ListQueuesRequest())
        return {q.queue: q for q in response.queues}

    async def build_logs(self, request_id: str) -> list[pb.TargetLog]:
        """The kept (redacted, bounded) logs of the Request's failed targets, every attempt."""
        response = await self._found("GetBuildLog", pb.GetBuildLogRequest(request_id=request_id))
        return [] if response is None else list(response.logs)

    async def hook_delivery(self, delivery_id: str) -> pb.HookDelivery | None:
        """One hook delivery by id, or None when there is no such delivery."""
        response = await self._found("GetHookDelivery", pb.GetHookDeliveryRequest(id=delivery_id))
        return None if response is None else response.delivery

    async def _found(self, method: str, message: Any) -> Any:
        """Like ``_call``, but NOT_FOUND answers None."""
        try:
            return await getattr(self._stub, method)(
                message, metadata=self._metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise ApiUnavailable(f"{method}: {exc.code().name}: {exc.details()}") from None

    async def revalidate(
        self, queue: str, uri: str, *, flaky: bool, reason: str
    ) -> types_pb2.Request:
        """Start a re-validation with the admin token; ``ApiUnavailable`` without one."""
        if self._admin is None:
            raise ApiUnavailable("re-validation is not enabled on this console")
        response: pb.RevalidateResponse = await self._call(
            "Revalidate",
            pb.RevalidateRequest(queue=queue, uri=uri, flaky=flaky, reason=reason),
            self._admin,
        )
        return response.request

    async def watch(self, queues: list[str]) -> AsyncIterator[topics_pb2.HookEvent]:
        """Verdict events of ``queues`` as they are recorded, until the stream ends."""
        call = self._stub.WatchEvents(pb.WatchEventsRequest(queues=queues), metadata=self._metadata)
        try:
            async for response in call:
                yield response.event
        except grpc.aio.AioRpcError as exc:
            raise ApiUnavailable(f"WatchEvents: {exc.code().name}: {exc.details()}") from None
        finally:
            call.cancel()
