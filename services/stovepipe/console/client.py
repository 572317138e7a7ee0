"""The console's only way to the data: the public ``StovepipeService``, with a ``read`` token.

Every page is built from these calls, never from the database, so the console
shows exactly what any other API client would see and needs no more rights
than one. Keeping the calls in one module lets newer RPCs (a paged list of
Requests, a Queue summary, build logs, hook deliveries) replace the probing
below without touching the pages.
"""

from __future__ import annotations

import asyncio
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
PROBE_AHEAD = 50
"""At most this many Requests newer than the newest verdict are looked up (in flight)."""


class ApiUnavailable(RuntimeError):
    """The API refused or could not be reached; the message is safe to show."""


@dataclass(frozen=True)
class Page:
    facts: list[types_pb2.ValidationFact]
    next_token: str


def request_number(request_id: str) -> int | None:
    """``n`` of ``request/<queue>/<n>`` (the ingest order within the Queue), else None."""
    tail = request_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


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
        """The Request, or None when the API knows no such id."""
        try:
            response = await self._stub.GetRequest(
                pb.GetRequestRequest(request_id=request_id),
                metadata=self._metadata,
                timeout=CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise ApiUnavailable(f"GetRequest: {exc.code().name}: {exc.details()}") from None
        request: types_pb2.Request = response.request
        return request

    async def requests(self, queue: str, numbers: list[int]) -> dict[int, types_pb2.Request]:
        """The Requests of ``queue`` with these ingest numbers that exist, concurrently."""
        found = await asyncio.gather(*(self.request(f"request/{queue}/{n}") for n in numbers))
        return {n: r for n, r in zip(numbers, found, strict=True) if r is not None}

    async def newer_requests(self, queue: str, after: int) -> list[types_pb2.Request]:
        """Requests ingested after number ``after``, oldest first (at most ``PROBE_AHEAD``).

        Until the API lists Requests, the ingest numbers are probed in batches of ten.
        Numbers are handed out in order but may skip one (an ingest that lost a race),
        so only a batch with nothing in it ends the list.
        """
        out: list[types_pb2.Request] = []
        n = after + 1
        while len(out) < PROBE_AHEAD:
            batch = list(range(n, n + 10))
            found = await self.requests(queue, batch)
            if not found:
                break
            out.extend(found[number] for number in batch if number in found)
            n += 10
        return out[:PROBE_AHEAD]

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
