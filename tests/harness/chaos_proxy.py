"""A gRPC proxy that sits in front of an extension and misbehaves on request.

The fault-injection suite points Stovepipe's workers at this proxy instead of
at the real SourceControl or BuildRunner server, so the extension can be made
unavailable, slow, wrong or incomprehensible without touching its code. Every
method is forwarded as raw bytes, so one proxy serves any unary contract (and the
server streams named in ``STREAMING_METHODS``, forwarded without faults).

Faults are set per method name (``"Trigger"``) or for all methods (``"*"``):

* ``UNAVAILABLE`` / ``INTERNAL`` / ``NOT_FOUND`` …: answer with that status code;
* ``GARBAGE``: answer bytes that are not a protobuf message at all;
* ``EMPTY``: answer a well-formed but empty message (every field at its default);
* ``HOLD``: keep the call open until :meth:`ChaosProxy.release` — this is how a
  test catches a worker *inside* a handler before killing it.

A fault may be limited to the calls whose request mentions a string (``only=``,
a Queue's name, say), so tests sharing a stack do not catch each other's calls.
``calls_in_flight(method)`` tells how many calls are currently being held or
forwarded, and ``held(method)`` how many are being held, so a test can wait for
the moment it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from stovepipe.grpcutil import open_channel
from stovepipe.grpcutil.server import SERVER_OPTIONS

ALL = "*"

# A length-delimited field whose declared length runs past the end of the
# buffer: every protobuf parser rejects it.
GARBAGE_BYTES = b"\x0a\xff\xff\xff\x0f\x01\x02"


class Fault(enum.StrEnum):
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    NOT_FOUND = "not_found"
    GARBAGE = "garbage"
    EMPTY = "empty"
    HOLD = "hold"


_STATUS = {
    Fault.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Fault.INTERNAL: grpc.StatusCode.INTERNAL,
    Fault.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
}


STREAMING_METHODS = ("/WatchBuilds",)
"""Server-streaming methods of the proxied contracts; every other method is unary."""


def _identity(data: bytes) -> bytes:
    return data


class ChaosProxy:
    """Forward unary calls to ``upstream`` unless a fault is set for the method."""

    def __init__(self, upstream: str, listen: str = "127.0.0.1:0") -> None:
        self.upstream = upstream
        self._listen = listen
        self._faults: dict[str, Fault] = {}
        self._only: dict[str, bytes] = {}
        self._released = asyncio.Event()
        self._in_flight: Counter[str] = Counter()
        self._held: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        """Every call that reached the proxy, by method, faulted or not."""
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> ChaosProxy:
        self._channel = open_channel(self.upstream)
        server = grpc.aio.server(options=list(SERVER_OPTIONS))
        server.add_generic_rpc_handlers((_Forwarder(self._call, self._stream),))
        self.port = server.add_insecure_port(self._listen)
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            await self._server.stop(0.5)
        if self._channel is not None:
            await self._channel.close(None)

    def set_fault(self, method: str, fault: Fault, *, only: str | None = None) -> None:
        """Misbehave on ``method`` (a short name like ``"Status"`` or ``ALL``) from now on;
        with ``only``, just on the calls whose request contains that string."""
        if fault is Fault.HOLD:
            self._released.clear()
        self._faults[method] = fault
        if only is None:
            self._only.pop(method, None)
        else:
            self._only[method] = only.encode()

    def clear(self, method: str | None = None) -> None:
        """Behave again (on ``method``, or everywhere) and let held calls through."""
        if method is None:
            self._faults.clear()
            self._only.clear()
        else:
            self._faults.pop(method, None)
            self._only.pop(method, None)
        if Fault.HOLD not in self._faults.values():
            self.release()

    def release(self) -> None:
        self._released.set()

    def reset(self) -> None:
        """Behave everywhere, let held calls through, and zero the call counts."""
        self.clear()
        self.injected.clear()
        self.calls.clear()

    def calls_in_flight(self, method: str) -> int:
        return self._in_flight[method]

    def held(self, method: str) -> int:
        """Calls of ``method`` being held by a ``HOLD`` fault right now."""
        return self._held[method]

    def _fault_for(self, method: str, request: bytes) -> Fault | None:
        for name in (method, ALL):
            fault = self._faults.get(name)
            if fault is not None and self._only.get(name, b"") in request:
                return fault
        return None

    async def _call(self, full_method: str, request: bytes, context: Any) -> bytes:
        method = full_method.rsplit("/", 1)[-1]
        self.calls[method] += 1
        self._in_flight[method] += 1
        try:
            fault = self._fault_for(method, request)
            if fault is Fault.HOLD:
                self.injected[f"{method}:{fault}"] += 1
                self._held[method] += 1
                try:
                    await self._released.wait()
                finally:
                    self._held[method] -= 1
                fault = self._fault_for(method, request)
            if fault is not None and fault is not Fault.HOLD:
                self.injected[f"{method}:{fault}"] += 1
                if fault is Fault.GARBAGE:
                    return GARBAGE_BYTES
                if fault is Fault.EMPTY:
                    return b""
                await context.abort(_STATUS[fault], f"chaos proxy: injected {fault}")
            return await self._forward(full_method, request, context)
        finally:
            self._in_flight[method] -= 1

    async def _stream(self, full_method: str, request: bytes, context: Any) -> AsyncIterator[bytes]:
        """A server stream (``WatchBuilds``) forwarded as it is, no fault applied: what the
        fault suite breaks is the unary calls; a broken watch only costs the push."""
        assert self._channel is not None
        self.calls[full_method.rsplit("/", 1)[-1]] += 1
        call = self._channel.unary_stream(
            full_method, request_serializer=_identity, response_deserializer=_identity
        )(request)
        try:
            await context.send_initial_metadata(await call.initial_metadata() or ())
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        finally:
            call.cancel()

    async def _forward(self, full_method: str, request: bytes, context: Any) -> bytes:
        assert self._channel is not None
        call = self._channel.unary_unary(
            full_method, request_serializer=_identity, response_deserializer=_identity
        )
        remaining = context.time_remaining()
        try:
            response: bytes = await call(request, timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
            raise AssertionError("unreachable") from exc
        return response


class _Forwarder(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Route every method, undecoded, to one coroutine."""

    def __init__(
        self,
        call: Callable[[str, bytes, Any], Any],
        stream: Callable[[str, bytes, Any], AsyncIterator[bytes]],
    ) -> None:
        self._call = call
        self._stream = stream

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method
        if method.endswith(STREAMING_METHODS):

            async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                async for message in self._stream(method, request, context):
                    yield message

            return grpc.unary_stream_rpc_method_handler(stream)

        async def handle(request: bytes, context: Any) -> bytes:
            result: bytes = await self._call(method, request, context)
            return result

        return grpc.unary_unary_rpc_method_handler(handle)


@contextlib.asynccontextmanager
async def chaos_proxy(upstream: str) -> Any:
    proxy = await ChaosProxy(upstream).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
