"""``stovepipe poller`` and ``stovepipe webhooks``: the processes that notice heads moving.

Imports of heavy modules happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from stovepipe.cli.process_options import MetricsHost, MetricsPort

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Path to stovepipe.yaml (default: ./stovepipe.yaml if present, else defaults).",
        envvar="STOVEPIPE_CONFIG",
    ),
]
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


def _health_listen(host: str, port: int | None) -> str | None:
    bracketed = f"[{host}]" if ":" in host and "[" not in host else host
    return f"{bracketed}:{port}" if port is not None else None


def register(app: typer.Typer) -> None:
    @app.command()
    def poller(
        config: ConfigOption = None,
        health_port: HealthPort = None,
        health_host: HealthHost = "0.0.0.0",  # noqa: S104 - a readiness probe reaches the pod
        metrics_port: MetricsPort = None,
        metrics_host: MetricsHost = None,
    ) -> None:
        """Poll the head of every Queue with a `poll:` section on its schedule and ingest
        it when it moved (trigger poll, or schedule for cron). Replicas share the work
        through leases in storage. Configuration changes need a restart."""
        from stovepipe.cli.loading import load_settings
        from stovepipe.runtime.poller_process import run_poller

        settings = load_settings(config)
        if not settings.polled_queues:
            typer.echo("no queue has a poll: section; nothing to poll", err=True)
        asyncio.run(
            run_poller(
                settings,
                _health_listen(health_host, health_port),
                metrics_port=metrics_port,
                metrics_host=metrics_host,
            )
        )

    @app.command()
    def webhooks(
        config: ConfigOption = None,
        health_port: HealthPort = None,
        health_host: HealthHost = "0.0.0.0",  # noqa: S104 - a readiness probe reaches the pod
        metrics_port: MetricsPort = None,
        metrics_host: MetricsHost = None,
    ) -> None:
        """Receive push webhooks (POST /hooks/github, /hooks/gitlab, /hooks/gitea) on
        webhooks.listen, verify them with the configured secrets and ingest the matching
        Queues (trigger push). Answers 202, 401 (bad signature), 413 (too large)."""
        from stovepipe.cli.loading import load_settings
        from stovepipe.runtime.webhooks_process import EXIT_MISCONFIGURED, run_webhooks

        settings = load_settings(config)
        if settings.webhooks is None:
            typer.echo("error: the configuration has no webhooks: section", err=True)
            raise typer.Exit(EXIT_MISCONFIGURED)
        asyncio.run(
            run_webhooks(
                settings,
                _health_listen(health_host, health_port),
                metrics_port=metrics_port,
                metrics_host=metrics_host,
            )
        )
