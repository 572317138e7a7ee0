"""The typed async client core uses to talk to any BuildRunner server.

It is deliberately thin: it converts between the model and protobuf and sets a
deadline on every call. ``grpc.aio.AioRpcError`` propagates unchanged, because
core classifies gRPC status codes in one place (``stovepipe.failures``).
"""

from __future__ import annotations

import grpc

from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.ext.v1.build_runner_pb2_grpc import BuildRunnerServiceStub
from stovepipe.extensions.buildrunner.codec import (
    decode_build_state,
    decode_log,
    decode_report,
    encode_trigger,
)
from stovepipe.extensions.buildrunner.contract import BuildRunner
from stovepipe.extensions.buildrunner.model import (
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
