"""What every long-running Stovepipe process turns on first: logs, traces, ``/metrics``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stovepipe.config import StovepipeConfig
from stovepipe.runtime.logs import configure_logging
from stovepipe.telemetry.metrics import MetricsServer, serve_metrics
from stovepipe.telemetry.tracing import start_tracing


@contextlib.contextmanager
def process_telemetry(
    config: StovepipeConfig,
    component: str,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> Iterator[MetricsServer | None]:
    """Logging, the tracer provider and the metrics server of this process, undone on
    exit (pending spans are flushed). ``metrics_port``/``metrics_host`` override
    ``telemetry.metrics_port``/``metrics_host``; no port anywhere means no server."""
    telemetry = config.telemetry
    configure_logging(component, telemetry.log_format)
    tracing = start_tracing(telemetry, component)
    port = metrics_port if metrics_port is not None else telemetry.metrics_port
    server = serve_metrics(metrics_host or telemetry.metrics_host, port) if port else None
    try:
        yield server
    finally:
        if server is not None:
            server.close()
        if tracing is not None:
            tracing.shutdown()
