"""One tracer provider per process, set from ``telemetry:`` (off unless configured).

Spans already exist wherever work crosses a boundary (the Kafka producer and
consumer spans, the delay forwarder); without a provider they cost next to
nothing. With one, every gRPC client and server call is instrumented as well
(``opentelemetry-instrumentation-grpc``), so a Request's trace runs from the
Ingest RPC through every topic, delay tier and extension call to its verdict.
The sampler respects a sampled parent, so a trace is never cut in the middle.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcAioInstrumentorServer,
)
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from stovepipe.config.sections import TelemetryConfig

log = logging.getLogger(__name__)


@dataclass
class Tracing:
    """What :func:`start_tracing` installed; ``shutdown`` flushes and undoes it."""

    provider: TracerProvider
    client: GrpcAioInstrumentorClient
    server: GrpcAioInstrumentorServer

    def shutdown(self) -> None:
        self.client.uninstrument()
        self.server.uninstrument()
        self.provider.shutdown()


def tracer_provider(telemetry: TelemetryConfig, component: str) -> TracerProvider:
    """A provider exporting to the configured collector and/or the console."""
    provider = TracerProvider(
        resource=Resource.create(
            {
                SERVICE_NAME: "stovepipe",
                SERVICE_INSTANCE_ID: component,
                "stovepipe.component": component,
            }
        ),
        sampler=ParentBased(TraceIdRatioBased(telemetry.sampling_ratio)),
    )
    if telemetry.otlp_endpoint:
        exporter = OTLPSpanExporter(
            endpoint=telemetry.otlp_endpoint, insecure=telemetry.otlp_insecure
        )
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    if telemetry.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return provider


def start_tracing(telemetry: TelemetryConfig, component: str) -> Tracing | None:
    """Install the process's provider and gRPC instrumentation; ``None`` when tracing is off.

    Call it before any gRPC server or channel is created: the instrumentation
    wraps ``grpc.aio.server`` and the channel constructors, not existing objects.
    """
    if not telemetry.tracing:
        return None
    provider = tracer_provider(telemetry, component)
    trace.set_tracer_provider(provider)
    client = GrpcAioInstrumentorClient()  # type: ignore[no-untyped-call]
    server = GrpcAioInstrumentorServer()  # type: ignore[no-untyped-call]
    client.instrument(tracer_provider=provider)
    server.instrument(tracer_provider=provider)
    log.info(
        "tracing on: %s, sampling %.0f%%",
        telemetry.otlp_endpoint or "console",
        telemetry.sampling_ratio * 100,
    )
    return Tracing(provider, client, server)
