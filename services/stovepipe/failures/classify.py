"""Classify exceptions as retryable or not; see the package docstring."""

from __future__ import annotations

import enum

import grpc

from stovepipe.domain.errors import (
    IllegalTransition,
    InvalidInput,
    NotFound,
    Refused,
    StovepipeError,
)
from stovepipe.redaction import redact_line


class Verdict(enum.StrEnum):
    RETRYABLE = "retryable"
    NON_RETRYABLE = "non_retryable"


class Retryable(StovepipeError):
    """A transient failure: the same message may succeed later."""


class NonRetryable(StovepipeError):
    """A permanent failure: retrying the same message cannot help."""


KNOWN_FAILURES: tuple[type[BaseException], ...] = (StovepipeError, grpc.aio.AioRpcError)
"""What Stovepipe and its extensions raise on purpose: our own errors (storage's
included) and gRPC status errors. A loop that must outlive one item's failure
(the sweeper) catches these and :func:`classify`s them; anything else is a bug
and propagates."""

_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


def grpc_code_verdict(code: grpc.StatusCode) -> Verdict:
    """UNAVAILABLE, timeouts, exhaustion, aborts and server faults are worth retrying.

    INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED,
    UNAUTHENTICATED, UNIMPLEMENTED, ALREADY_EXISTS, OUT_OF_RANGE and DATA_LOSS are
    answers that will not change on a retry.
    """
    return Verdict.RETRYABLE if code in _RETRYABLE_CODES else Verdict.NON_RETRYABLE


def classify(exc: BaseException) -> Verdict:
    """Map any exception a stage can raise to a verdict; unknown errors are retryable.

    Unknown errors retry because a bounded number of retries ends in the
    dead-letter path anyway, which fails closed; dead-lettering a transient
    fault at once would record a commit as broken for no reason.
    """
    if isinstance(exc, Retryable):
        return Verdict.RETRYABLE
    if isinstance(exc, NonRetryable | InvalidInput | IllegalTransition | NotFound | Refused):
        return Verdict.NON_RETRYABLE
    if isinstance(exc, grpc.aio.AioRpcError):
        return grpc_code_verdict(exc.code())
    try:
        from stovepipe.storage.errors import is_retryable
    except ImportError:  # pragma: no cover - storage is part of the distribution
        return Verdict.RETRYABLE
    if is_retryable(exc):
        return Verdict.RETRYABLE
    if isinstance(exc, StovepipeError):
        return Verdict.NON_RETRYABLE
    return Verdict.RETRYABLE


def short_reason(exc: BaseException, limit: int = 300) -> str:
    """A one-line, redacted description fit for a header, a log line or an event."""
    if isinstance(exc, grpc.aio.AioRpcError):
        text = f"{exc.code().name}: {exc.details() or ''}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact_line(text, limit)
