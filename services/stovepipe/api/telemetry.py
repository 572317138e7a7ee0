"""API calls counted and timed by method and status, and their spans annotated.

An interceptor, first in line, so a call refused by the token check or the
request guard is counted with the status the caller saw. Method labels are
only the service's own methods (anything else is ``other``), so a caller
inventing method names cannot grow the label set.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace

from stovepipe.telemetry.instrument import request_fields
from stovepipe.telemetry.metrics import API_REQUEST_SECONDS, API_REQUESTS
from stovepipe.v1 import stovepipe_service_pb2 as pb

_SERVICE = "/stovepipe.v1.StovepipeService/"
_METHODS = frozenset(pb.DESCRIPTOR.services_by_name["StovepipeService"].methods_by_name)


def _method(full: str) -> str:
    name = full.removeprefix(_SERVICE)
    return name if full.startswith(_SERVICE) and name in _METHODS else "other"


def _code(context: Any, error: BaseException | None) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and not isinstance(code, bool):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "OK" if error is None else "UNKNOWN"


class ApiTelemetry(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every unary and server-streaming handler with a count, a timer and attributes."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = _method(handler_call_details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _unary(method: str, behavior: Any) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call(request: Any, context: Any) -> Any:
        span = trace.get_current_span()
        span.set_attributes(request_fields(request))
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            response = await behavior(request, context)
            span.set_attributes(request_fields(response))
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            API_REQUESTS.labels(method, _code(context, error)).inc()
            API_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - start)

    return call


def _stream(method: str, behavior: Any) -> Callable[[Any, Any], Any]:
    """Keep the handler's shape: an async generator stays one; a coroutine that writes
    with ``context.write`` (grpc's health ``Watch``) stays a coroutine, since grpc runs
    the two differently and an ``async for`` over a coroutine fails."""
    if not inspect.isasyncgenfunction(behavior):

        async def writer(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                API_REQUESTS.labels(method, _code(context, error)).inc()
                API_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - start)

        return writer

    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            API_REQUESTS.labels(method, _code(context, error)).inc()
            API_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - start)

    return call
