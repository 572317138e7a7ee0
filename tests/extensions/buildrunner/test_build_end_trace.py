"""A pushed build end continues the trace of the Trigger call that asked for the build.

buildwatch publishes the pushed end inside the trace context the runner echoes,
so the Request's trace stays one tree whether buildsignal hears of the end by
push or by poll. These check each link: the runner keeps the caller's context
(from the call's metadata when its server is not instrumented), the wire keeps
it, buildwatch publishes inside it, and a caller cannot make a runner keep an
unbounded amount of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from google.protobuf.message import Message
from opentelemetry import propagate

from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.ext.v1 import build_runner_pb2_grpc as pb_grpc
from stovepipe.extensions.buildrunner import (
    BuildEnded,
    BuildSource,
    BuildState,
    TargetSpec,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.client import BuildRunnerClient
from stovepipe.extensions.buildrunner.codec import decode_ended, encode_ended, encode_trigger
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner
from stovepipe.extensions.buildrunner.servicer import SERVICE_NAME, BuildRunnerServicer
from stovepipe.extensions.buildrunner.tracecontext import MAX_ENTRIES, MAX_VALUE, bounded
from stovepipe.grpcutil import open_channel, start_server
from stovepipe.stages import topics
from stovepipe.stages.buildwatch import BuildWatcher
from stovepipe.v1 import topics_pb2

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
KEY = "request/mono/main/7#1#-"

SPEC = TriggerSpec(
    source=BuildSource(queue="mono/main", repository="https://example.com/mono.git", ref="main"),
    base_uri="uri-base",
    head_uri="uri-head",
    targets=(TargetSpec(name="unit", command="make test"),),
    idempotency_key=KEY,
)


def _trace_id_of(carrier: dict[str, str]) -> str:
    return carrier.get("traceparent", "").split("-")[1] if carrier.get("traceparent") else ""


async def test_a_runner_echoes_the_trigger_calls_trace_context_in_the_build_end() -> None:
    """Over real gRPC with no instrumentation: the context comes from the metadata."""
    runner = FakeBuildRunner()
    servicer = BuildRunnerServicer(runner)
    server = await start_server("127.0.0.1:0", [servicer.register], [SERVICE_NAME])
    channel = open_channel(server.address)
    try:
        client = BuildRunnerClient(channel, timeout_s=10.0)
        async with client.watch_builds() as notices:
            stub = pb_grpc.BuildRunnerServiceStub(channel)
            answer = await stub.Trigger(
                encode_trigger(SPEC), metadata=(("traceparent", TRACEPARENT),), timeout=10
            )
            await client.status(answer.build_id)  # the fake advances builds when asked
            notice = await asyncio.wait_for(anext(aiter(notices)), 10)
    finally:
        await channel.close(None)
        await server.stop(0)

    assert notice.build_id == answer.build_id
    assert _trace_id_of(dict(notice.trace_context)) == TRACE_ID


async def test_a_build_triggered_outside_any_trace_ends_with_an_empty_context() -> None:
    runner = FakeBuildRunner()
    async with runner.watch_builds() as notices:
        build_id = await runner.trigger(SPEC)
        await runner.status(build_id)
        notice = await asyncio.wait_for(anext(aiter(notices)), 10)
    assert notice.build_id == build_id
    assert dict(notice.trace_context) == {}


def test_the_wire_keeps_the_context_and_bounds_it() -> None:
    ended = BuildEnded(
        build_id="b-1",
        state=BuildState.SUCCEEDED,
        idempotency_key=KEY,
        trace_context={"traceparent": TRACEPARENT},
    )
    wire = pb.WatchBuildsResponse.FromString(encode_ended(ended).SerializeToString())
    assert decode_ended(wire) == ended

    flood = encode_ended(ended)
    for n in range(MAX_ENTRIES * 4):
        flood.trace_context[f"k{n}"] = "v"
    flood.trace_context["huge"] = "x" * (MAX_VALUE + 1)
    decoded = decode_ended(flood)
    assert len(decoded.trace_context) == MAX_ENTRIES
    assert "huge" not in decoded.trace_context
    assert bounded({"a": "b"}) == {"a": "b"}


class _OneNotice:
    """A runner whose stream carries one notice, then stays open."""

    def __init__(self, notice: BuildEnded) -> None:
        self._notice = notice

    @asynccontextmanager
    async def watch_builds(self) -> AsyncIterator[AsyncIterator[BuildEnded]]:
        async def stream() -> AsyncIterator[BuildEnded]:
            yield self._notice
            await asyncio.Event().wait()

        yield stream()


class _ContextRecorder:
    """Notes the trace context current when each message is published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Message, dict[str, str]]] = []
        self.arrived = asyncio.Event()

    async def publish(self, topic: str, message: Message) -> None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.published.append((topic, message, carrier))
        self.arrived.set()


async def test_buildwatch_publishes_the_pushed_end_inside_the_echoed_trace() -> None:
    notice = BuildEnded(
        build_id="b-1",
        state=BuildState.SUCCEEDED,
        idempotency_key=KEY,
        trace_context={"traceparent": TRACEPARENT},
    )
    recorder = _ContextRecorder()
    watcher = BuildWatcher({"local": _OneNotice(notice)}, recorder)  # type: ignore[dict-item]
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.wait_for(recorder.arrived.wait(), 10)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    [(topic, message, carrier)] = recorder.published
    assert topic == topics.BUILDSIGNAL
    assert isinstance(message, topics_pb2.BuildSignalMessage) and message.pushed
    assert _trace_id_of(carrier) == TRACE_ID
    # outside the forward, no trace context is left behind
    after: dict[str, str] = {}
    propagate.inject(after)
    assert "traceparent" not in after
