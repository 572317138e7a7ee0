"""The typed async client core uses to talk to any BuildRunner server.

It is deliberately thin: it converts between the model and protobuf and sets a
deadline on every call. ``grpc.aio.AioRpcError`` propagates unchanged, because
core classifies gRPC status codes in one place (``stovepipe.failures``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.ext.v1.build_runner_pb2_grpc import BuildRunnerServiceStub
from stovepipe.extensions.buildrunner.codec import (
    decode_build_state,
    decode_ended,
    decode_log,
    decode_report,
    encode_trigger,
)
from stovepipe.extensions.buildrunner.contract import BuildRunner
from stovepipe.extensions.buildrunner.model import (
    BuildEnded,
    BuildReport,
    BuildSource,
    BuildState,
    LogChunk,
    QueueSourceLike,
    TargetReport,
    TargetSpec,
    TargetState,
    TriggerSpec,
)

__all__ = [
    "BuildEnded",
    "BuildReport",
    "BuildRunner",
    "BuildRunnerClient",
    "BuildSource",
    "BuildState",
    "LogChunk",
    "QueueSourceLike",
    "TargetReport",
    "TargetSpec",
    "TargetState",
    "TriggerSpec",
]

DEFAULT_TIMEOUT_SECONDS = 10.0


class BuildRunnerClient:
    """``BuildRunner`` over a gRPC channel the caller owns (and closes).

    ``timeout_s`` is the deadline of every call unless a call passes its own.
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._stub = BuildRunnerServiceStub(channel)
        self._timeout_s = timeout_s

    def _deadline(self, timeout_s: float | None) -> float:
        return self._timeout_s if timeout_s is None else timeout_s

    async def trigger(self, spec: TriggerSpec, *, timeout_s: float | None = None) -> str:
        response = await self._stub.Trigger(encode_trigger(spec), timeout=self._deadline(timeout_s))
        return response.build_id

    async def status(self, build_id: str, *, timeout_s: float | None = None) -> BuildReport:
        response = await self._stub.Status(
            pb.StatusRequest(build_id=build_id), timeout=self._deadline(timeout_s)
        )
        return decode_report(response)

    async def cancel(self, build_id: str, *, timeout_s: float | None = None) -> BuildState:
        response = await self._stub.Cancel(
            pb.CancelRequest(build_id=build_id), timeout=self._deadline(timeout_s)
        )
        return decode_build_state(response.state)

    async def get_log(
        self, build_id: str, target: str, *, timeout_s: float | None = None
    ) -> LogChunk:
        response = await self._stub.GetLog(
            pb.GetLogRequest(build_id=build_id, target=target), timeout=self._deadline(timeout_s)
        )
        return decode_log(response)

    @asynccontextmanager
    async def watch_builds(self) -> AsyncIterator[AsyncIterator[BuildEnded]]:
        """The runner's ``WatchBuilds`` stream, entered once the server has registered it
        (its initial metadata arrived); no deadline, cancelled on exit."""
        call = self._stub.WatchBuilds(pb.WatchBuildsRequest())
        try:
            await call.initial_metadata()
            if call.done():
                await _raise_status(call)
            yield _decoded(call)
        finally:
            call.cancel()


async def _decoded(
    call: grpc.aio.UnaryStreamCall[pb.WatchBuildsRequest, pb.WatchBuildsResponse],
) -> AsyncIterator[BuildEnded]:
    async for notice in call:
        yield decode_ended(notice)


async def _raise_status(
    call: grpc.aio.UnaryStreamCall[pb.WatchBuildsRequest, pb.WatchBuildsResponse],
) -> None:
    """Surface a stream the server ended at once (``UNIMPLEMENTED``, ``UNAUTHENTICATED``)."""
    async for _ in call:
        pass
