"""Serve any ``BuildRunner`` implementation as ``stovepipe.ext.v1.BuildRunnerService``.

This is the server-side half of the error mapping: a ``BuildRunnerError`` becomes
its status code, and an ``AioRpcError`` (what the fake raises) keeps its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpc

from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.ext.v1 import build_runner_pb2_grpc as pb_grpc
from stovepipe.extensions.buildrunner.codec import (
    decode_trigger,
    encode_build_state,
    encode_ended,
    encode_log,
    encode_report,
)
from stovepipe.extensions.buildrunner.contract import BuildRunner
from stovepipe.extensions.buildrunner.errors import BuildRunnerError
from stovepipe.extensions.buildrunner.tracecontext import callers_context

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["BuildRunnerService"].full_name

Context = grpc.aio.ServicerContext[object, object]
_T = TypeVar("_T")


async def _answer(context: Context, call: Awaitable[_T]) -> _T:
    try:
        return await call
    except BuildRunnerError as exc:
        await context.abort(exc.code, str(exc))
    except grpc.aio.AioRpcError as exc:
        await context.abort(exc.code(), exc.details() or "")
    raise AssertionError("unreachable: abort raises")


class BuildRunnerServicer(pb_grpc.BuildRunnerServiceServicer):
    """Adapts a ``BuildRunner`` to the generated servicer interface."""

    def __init__(self, runner: BuildRunner) -> None:
        self._runner = runner

    def register(self, server: grpc.aio.Server) -> None:
        """A ``grpcutil`` registrar."""
        pb_grpc.add_BuildRunnerServiceServicer_to_server(self, server)

    async def Trigger(self, request: pb.TriggerRequest, context: Context) -> pb.TriggerResponse:
        with callers_context(context.invocation_metadata()):
            build_id = await _answer(context, self._runner.trigger(decode_trigger(request)))
        return pb.TriggerResponse(build_id=build_id)

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        return encode_report(await _answer(context, self._runner.status(request.build_id)))

    async def Cancel(self, request: pb.CancelRequest, context: Context) -> pb.CancelResponse:
        state = await _answer(context, self._runner.cancel(request.build_id))
        return pb.CancelResponse(state=encode_build_state(state))

    async def GetLog(self, request: pb.GetLogRequest, context: Context) -> pb.GetLogResponse:
        chunk = await _answer(context, self._runner.get_log(request.build_id, request.target))
        return encode_log(chunk)

    async def WatchBuilds(
        self, request: pb.WatchBuildsRequest, context: Context
    ) -> AsyncIterator[pb.WatchBuildsResponse]:
        try:
            async with self._runner.watch_builds() as ended:
                await context.send_initial_metadata(())
                async for notice in ended:
                    yield encode_ended(notice)
        except BuildRunnerError as exc:
            await context.abort(exc.code, str(exc))
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
