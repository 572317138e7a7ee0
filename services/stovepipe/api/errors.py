"""Map what the API's collaborators raise to gRPC status codes, in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from stovepipe.config import UnknownQueue
from stovepipe.domain import InvalidInput, NotFound, Refused
from stovepipe.failures import Verdict, classify, short_reason
from stovepipe.runtime.event_feed import SubscriberTooSlow, TooManySubscribers

log = logging.getLogger(__name__)

T = TypeVar("T")


async def abort_for(context: grpc.aio.ServicerContext[object, object], exc: Exception) -> None:
    """Abort the call with the code that tells the caller what to do next."""
    if isinstance(exc, UnknownQueue):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, InvalidInput):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, NotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, Refused):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, TooManySubscribers):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, SubscriberTooSlow):
        await context.abort(grpc.StatusCode.ABORTED, f"{exc}; watch again")
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            code = grpc.StatusCode.FAILED_PRECONDITION
        await context.abort(code, f"extension call failed: {short_reason(exc)}")
    if classify(exc) is Verdict.RETRYABLE:
        log.warning("transient failure: %s", short_reason(exc))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"try again: {short_reason(exc)}")
    log.exception("unexpected failure")
    await context.abort(grpc.StatusCode.INTERNAL, short_reason(exc))


async def guarded(
    context: grpc.aio.ServicerContext[object, object], call: Callable[[], Awaitable[T]]
) -> T:
    try:
        return await call()
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await abort_for(context, exc)
        raise AssertionError("unreachable: abort raises") from exc


async def guarded_stream(
    context: grpc.aio.ServicerContext[object, object], stream: AsyncIterator[T]
) -> AsyncIterator[T]:
    try:
        async for item in stream:
            yield item
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await abort_for(context, exc)
