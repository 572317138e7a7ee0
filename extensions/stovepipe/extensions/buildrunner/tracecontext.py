"""The trace context a build was asked for in, kept so its end notice can echo it.

A runner keeps the W3C ``traceparent``/``tracestate`` that was current when
``trigger`` ran and hands it back in the build's ``WatchBuilds`` notice, so the
caller's handling of the pushed end continues the trace of the work that asked
for the build instead of starting one of its own. It is telemetry only: nothing
here or at the caller decides anything on it, and a runner that loses it (a
restart) just sends an empty one. It is bounded so a caller cannot make a
runner keep an arbitrary amount of text per build.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

MAX_ENTRIES = 8
MAX_VALUE = 512
"""W3C caps ``tracestate`` at 32 members of modest length; beyond this it is not trace context."""


def current_trace_context() -> dict[str, str]:
    """The current context as propagation headers, bounded; empty when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return bounded(carrier)


def bounded(carrier: Mapping[str, str]) -> dict[str, str]:
    """At most ``MAX_ENTRIES`` entries of at most ``MAX_VALUE`` characters each."""
    kept = [(k, v) for k, v in carrier.items() if len(k) <= MAX_VALUE and len(v) <= MAX_VALUE]
    return dict(kept[:MAX_ENTRIES])


@contextmanager
def callers_context(
    metadata: grpc.aio.Metadata | tuple[tuple[str, str | bytes], ...] | None,
) -> Iterator[None]:
    """Run the body in the caller's trace context.

    When the gRPC server is instrumented the current span already continues the
    caller's; otherwise the context is read from the call's metadata, so a runner
    served without tracing still keeps what the caller sent.
    """
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with continued({k: v for k, v in metadata or () if isinstance(v, str)}):
        yield


@contextmanager
def continued(carrier: Mapping[str, str]) -> Iterator[None]:
    """Run the body in the trace context ``carrier`` holds (none: the body's own)."""
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)
