"""Map what the API's collaborators raise to gRPC status codes, in one place.

=============================================  ====================================
raised                                         status
=============================================  ====================================
``UnknownQueue``, ``NotFound``                 NOT_FOUND
``InvalidInput`` (malformed or out of bounds)  INVALID_ARGUMENT
``NotSupported``                               UNIMPLEMENTED
``Refused``                                    FAILED_PRECONDITION
an extension's NOT_FOUND / INVALID_ARGUMENT    FAILED_PRECONDITION (the Queue's setup)
an extension's other codes                     the same code
a version race lost, the database unavailable  UNAVAILABLE ("try again")
anything else                                  INTERNAL, logged with its traceback
=============================================  ====================================

Only what a retry can cure is UNAVAILABLE: an unexpected error is INTERNAL, so
a client never retries a request that can never succeed. Every message is
bounded (``bounded``) and refusals of bad input are logged in one line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from stovepipe.config import UnknownQueue
from stovepipe.domain import InvalidInput, NotFound, Refused
from stovepipe.failures import Retryable
from stovepipe.redaction import redact
from stovepipe.runtime.event_feed import SubscriberTooSlow, TooManySubscribers
from stovepipe.storage.errors import is_retryable

log = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[object, object]

MAX_DETAILS = 1024
"""The longest status message the API sends, in characters."""


class NotSupported(Exception):
    """A well-formed call for something this server does not do yet (UNIMPLEMENTED)."""


def bounded(text: str, limit: int = MAX_DETAILS) -> str:
    """``text`` on one line, redacted, at most ``limit`` characters.

    A long text is cut before it is redacted, so redaction never scans more
    than ``limit`` characters; the cut also drops the word it falls in, so a
    credential split by the cut cannot survive half-masked.
    """
    if len(text) > limit:
        kept = text[: limit - 40]
        kept = kept[: max(kept.rfind(" "), 0)]
        text = f"{kept} … ({len(text) - len(kept)} characters cut)"
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"  # masks can lengthen it


async def abort_for(context: Context, exc: Exception) -> None:
    """Abort the call with the code that tells the caller what to do next."""
    code, message = _status_for(exc)
    message = bounded(message)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected failure: %s", message, exc_info=exc)
    elif code is grpc.StatusCode.UNAVAILABLE:
        log.warning("transient failure: %s", message)
    else:
        log.info("refused: %s: %s", code.name, message)
    await context.abort(code, message)


def _status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, UnknownQueue | NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotSupported):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc)
    if isinstance(exc, Refused):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, TooManySubscribers):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, SubscriberTooSlow):
        return grpc.StatusCode.ABORTED, f"{exc}; watch again"
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            code = grpc.StatusCode.FAILED_PRECONDITION
        return code, f"extension call failed: {exc.code().name}: {exc.details() or ''}"
    if isinstance(exc, Retryable | TimeoutError) or is_retryable(exc):
        return grpc.StatusCode.UNAVAILABLE, f"try again: {_described(exc)}"
    return grpc.StatusCode.INTERNAL, f"internal error: {_described(exc)}"


def _described(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


async def guarded(context: Context, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await abort_for(context, exc)
        raise AssertionError("unreachable: abort raises") from exc


async def guarded_stream(context: Context, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        async for item in stream:
            yield item
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await abort_for(context, exc)
