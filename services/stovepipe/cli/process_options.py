"""Options every long-running process shares: where it serves Prometheus ``/metrics``.

One definition, so ``api``, ``worker``, ``poller``, ``webhooks`` and ``console`` say
the same thing in ``--help`` and read the same environment variables.
"""

from __future__ import annotations

from typing import Annotated

import typer

MetricsPort = Annotated[
    int | None,
    typer.Option(
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (default: "
        "telemetry.metrics_port; neither: no metrics server).",
        envvar="STOVEPIPE_METRICS_PORT",
        min=1,
        max=65535,
    ),
]
MetricsHost = Annotated[
    str | None,
    typer.Option(
        help="Address the metrics port binds (default: telemetry.metrics_host).",
        envvar="STOVEPIPE_METRICS_HOST",
        show_default=False,
    ),
]
