"""One Request is one trace: Ingest, every topic, the delay tiers, a retry and the
extension calls, exported over OTLP/gRPC to a receiver and checked as one tree."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness.live import QUEUE, live_stack
from harness.otlp import OtlpReceiver, tree_problems
from plugins.broker import group_timing, session_broker_is_tansu
from stovepipe.config.sections import TelemetryConfig
from stovepipe.failures import Retryable
from stovepipe.messaging import Delivery, DeliveryHandler
from stovepipe.runtime.sample_repo import STEPS
from stovepipe.telemetry.tracing import start_tracing
from stovepipe.testing import until
from stovepipe.v1 import types_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.postgres]

STAGE_SPANS = {
    "process stovepipe.process",
    "process stovepipe.build",
    "process stovepipe.buildsignal",
    "process stovepipe.record",
}


def _fail_record_once(failed: set[str]) -> Any:
    """The record stage's first delivery of each Request fails as storage blinking would."""

    def wrap(topic: str, handler: DeliveryHandler) -> DeliveryHandler:
        if topic != "stovepipe.record":
            return handler

        async def handle(payload: Any, delivery: Delivery) -> None:
            if payload.request_id not in failed:
                failed.add(payload.request_id)
                raise Retryable("injected: the database blinked")
            await handler(payload, delivery)

        return handle

    return wrap


async def test_one_request_is_one_connected_trace_across_every_hop(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str
) -> None:
    receiver = OtlpReceiver()
    address = await receiver.start()  # before instrumenting: its own calls stay untraced
    tracing = start_tracing(
        TelemetryConfig(otlp_endpoint=address, otlp_insecure=True), "e2e-tracing"
    )
    assert tracing is not None
    failed: set[str] = set()
    try:
        async with live_stack(
            tmp_path,
            kafka_bootstrap,
            migrated_pg_url,
            wrap=_fail_record_once(failed),
            workers={"record": {"backoff_initial_seconds": 0.2, "max_attempts": 3}},
            kafka=group_timing(embedded=session_broker_is_tansu(), tansu_session_ms=4_000),
        ) as live:
            live.repo.commit(STEPS[0].files, STEPS[0].title)
            ingest = await live.ingest()
            request = await live.wait_terminal(ingest.request_id)
            assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
    finally:
        await asyncio.to_thread(tracing.provider.force_flush)  # the receiver runs on this loop
        await asyncio.to_thread(tracing.shutdown)
    assert failed == {ingest.request_id}
    rid = ingest.request_id

    def mentioning() -> set[str]:
        return {
            s.trace_id for s in receiver.spans if s.attributes.get("stovepipe.request.id") == rid
        }

    traces = await until(mentioning, timeout_s=30, what="spans of the Request")
    await receiver.stop()
    assert len(traces) == 1, f"the Request's spans are in {len(traces)} traces"
    spans = receiver.trace(traces.pop())
    assert tree_problems(spans) == []
    names = {s.name for s in spans}
    assert names >= STAGE_SPANS, sorted(names)
    assert "/stovepipe.v1.StovepipeService/Ingest" in names
    assert any(n.startswith("delay stovepipe.delay") for n in names), sorted(names)
    for call in ("BuildRunnerService/Trigger", "SourceControlService/ResolveHead"):
        kinds = {s.attributes.get("rpc.system") for s in spans if s.name.endswith(call)}
        sides = [s for s in spans if s.name.endswith(call)]
        assert len(sides) >= 2, f"{call}: client and server spans expected, got {kinds}"
    records = [s for s in spans if s.name == "process stovepipe.record"]
    outcomes = sorted(
        (s.attributes["stovepipe.attempt"], s.attributes["stovepipe.outcome"]) for s in records
    )
    # the poll may also hand the ended build to record (an idempotent no-op then)
    assert (1, "retried") in outcomes and (2, "handled") in outcomes, outcomes
    # the pushed end (buildwatch, in the Trigger call's context) and the first poll
    published = [s for s in spans if s.name == "publish stovepipe.buildsignal"]
    assert len(published) >= 2, render_tree(spans)
    for span in spans:
        if span.name in STAGE_SPANS:
            assert span.attributes["stovepipe.queue"] == QUEUE
            assert span.attributes["stovepipe.request.id"] == rid
    print(render_tree(spans))


def render_tree(spans: list[Any]) -> str:
    """The trace as indented text (shown with -s; the report quotes it)."""
    children: dict[str, list[Any]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            extra = {
                k.removeprefix("stovepipe."): v
                for k, v in span.attributes.items()
                if k in ("stovepipe.attempt", "stovepipe.outcome", "stovepipe.delay.tier")
            }
            lines.append(f"{'  ' * depth}{span.name} [{span.service_instance}] {extra or ''}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
