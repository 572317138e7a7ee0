"""The API edge: every request is decoded and bounded here before a servicer sees it.

grpc decodes a request with the method's deserializer before the servicer runs
and answers UNKNOWN, with a traceback in the log, when the bytes are not the
method's message. ``RequestGuard`` takes decoding over: it registers each
method with a pass-through deserializer, decodes the bytes itself and answers
INVALID_ARGUMENT for corrupt ones; then it applies ``limits.check_request``, so
an oversized or malformed field is refused at once, before storage, extensions
or redaction run. Each refusal is one log line.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from stovepipe.api.errors import bounded
from stovepipe.api.limits import check_request
from stovepipe.domain import InvalidInput

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Answers INVALID_ARGUMENT for undecodable requests and out-of-bounds fields."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _guarded(handler, handler_call_details.method, handler.request_deserializer)


async def _refuse(context: Context, method: str, message: str) -> None:
    message = bounded(message)
    log.info("%s refused: INVALID_ARGUMENT: %s", method, message)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


async def _admit(raw: bytes, context: Context, method: str, decode: Callable[[bytes], Any]) -> Any:
    try:
        request = decode(raw)
    except DecodeError:
        name = method.rsplit("/", 1)[-1]
        await _refuse(context, method, f"the request is not a valid {name} request message")
    try:
        check_request(request)
    except InvalidInput as exc:
        await _refuse(context, method, str(exc))
    return request


def _guarded(handler: Handler, method: str, decode: Callable[[bytes], Any]) -> Handler:
    """The same method with bytes in, decoded and checked by ``_admit`` first.

    Request-streaming servicers must read through their request iterator, not
    ``context.read()`` (which would hand them raw bytes); ours and grpc's do.
    """
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        unary_unary: Any = handler.unary_unary

        async def unary_unary_behaviour(raw: bytes, context: Context) -> Any:
            return await unary_unary(await _admit(raw, context, method, decode), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary_behaviour, response_serializer=serialize
        )
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def admit_one(raw: bytes, context: Context) -> Any:
            return await _admit(raw, context, method, decode)

        return grpc.unary_stream_rpc_method_handler(
            _streaming(unary_stream, admit_one), response_serializer=serialize
        )

    async def admit_each(raws: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        async for raw in raws:
            yield await _admit(raw, context, method, decode)

    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def stream_unary_behaviour(raws: AsyncIterator[bytes], context: Context) -> Any:
            return await stream_unary(admit_each(raws, context), context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary_behaviour, response_serializer=serialize
        )
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream, admit_each), response_serializer=serialize
    )


def _streaming(behaviour: Any, admit: Callable[[Any, Context], Any]) -> Any:
    """Wrap a response-streaming behaviour in the same shape: an async generator, or a
    coroutine that writes with ``context.write`` (grpc's health ``Watch``)."""
    if inspect.isasyncgenfunction(behaviour):

        async def generator(raw: Any, context: Context) -> AsyncIterator[Any]:
            request = admit(raw, context)
            if inspect.isawaitable(request):
                request = await request
            async for response in behaviour(request, context):
                yield response

        return generator

    async def writer(raw: Any, context: Context) -> Any:
        request = admit(raw, context)
        if inspect.isawaitable(request):
            request = await request
        return await behaviour(request, context)

    return writer
