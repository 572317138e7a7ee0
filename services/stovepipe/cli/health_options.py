"""The readiness options every long-running process takes (``--health-port``,
``--health-host``), declared once so ``worker``, ``api``, ``poller`` and
``webhooks`` show and read them alike."""

from __future__ import annotations

from typing import Annotated

import typer

HealthPort = Annotated[
    int | None,
    typer.Option(
        help="Serve readiness as plaintext gRPC health on this port: SERVING once ready, "
        "NOT_SERVING while starting and draining.",
        envvar="STOVEPIPE_HEALTH_PORT",
        min=1,
        max=65535,
    ),
]
HealthHost = Annotated[
    str,
    typer.Option(help="Address the health port binds.", envvar="STOVEPIPE_HEALTH_HOST"),
]


def health_listen(host: str, port: int | None) -> str | None:
    """``host:port`` for the health server (IPv6 hosts bracketed), or None without a port."""
    bracketed = f"[{host}]" if ":" in host and "[" not in host else host
    return f"{bracketed}:{port}" if port is not None else None
