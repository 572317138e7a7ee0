"""``stovepipe api``: the gRPC API as a process.

It also runs the :class:`~stovepipe.telemetry.freshness.FreshnessMonitor` and the
pruning of kept build logs: the API is the one process every deployment runs,
and it already reads storage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from stovepipe.api.gate_cache import GateCacheSettings
from stovepipe.api.server import StovepipeApi, connection_options, serve_api
from stovepipe.api.transport import TransportError, check_listener, server_credentials
from stovepipe.config import StovepipeConfig
from stovepipe.grpcutil import BindError, GrpcServer
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.log_retention import prune_until_stopped
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.processes import stop_on_signals
from stovepipe.telemetry.freshness import FreshnessMonitor
from stovepipe.telemetry.process import process_telemetry

log = logging.getLogger(__name__)

EXIT_MISCONFIGURED = 2
EXIT_CANNOT_LISTEN = 1


async def start_api_server(
    config: StovepipeConfig, api: StovepipeApi, tokens: dict[str, str]
) -> GrpcServer:
    """Serve ``api`` on ``config.api.listen`` with TLS when configured.

    Raises ``TransportError`` for plaintext tokens on a network address or
    unreadable TLS files, ``BindError`` when the address is taken.
    """
    check_listener(config.api, has_tokens=bool(tokens))
    credentials = server_credentials(config.api.tls)
    options = connection_options(
        config.api.keepalive_seconds,
        config.api.max_connection_age_seconds,
        config.api.max_connection_age_grace_seconds,
    )
    return await serve_api(
        api, config.api.listen, tokens=tokens, credentials=credentials, options=options
    )


async def run_api(
    config: StovepipeConfig,
    health_listen: str | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Serve until SIGTERM. With ``health_listen`` readiness is also served there, in
    plaintext, so a probe (``stovepipe up``, Kubernetes) needs no API credentials;
    with a metrics port (argument or ``telemetry.metrics_port``), ``/metrics``."""
    with process_telemetry(config, "api", metrics_port=metrics_port, metrics_host=metrics_host):
        await _run_api(config, health_listen)


async def _run_api(config: StovepipeConfig, health_listen: str | None) -> None:
    tokens = config.api_tokens()
    try:  # before anything connects: a refusal should cost nothing and say why at once
        check_listener(config.api, has_tokens=bool(tokens))
        server_credentials(config.api.tls)
    except TransportError as exc:
        _fail(str(exc), EXIT_MISCONFIGURED)
    stop = stop_on_signals()
    health = await WorkerHealth.open(health_listen)
    try:
        await _serve(config, tokens, stop, health)
    finally:
        await health.close()


async def _serve(
    config: StovepipeConfig, tokens: dict[str, str], stop: asyncio.Event, health: WorkerHealth
) -> None:
    async with open_pipeline(config, "stovepipe-api") as pipeline:
        parts = pipeline.parts
        events = EventFeed(
            pipeline.messaging.settings,
            parts.store,
            max_subscribers=config.api.max_event_streams,
            max_per_owner=config.api.max_event_streams_per_caller,
        )
        api = StovepipeApi(
            parts.store,
            config,
            parts.ingester(),
            parts.revalidator(),
            events=events,
            gate_cache=GateCacheSettings(
                max_age_s=config.api.gate_cache_seconds,
                head_max_age_s=config.api.branch_head_max_age_seconds,
            ),
        )
        try:
            server = await start_api_server(config, api, tokens)
        except (TransportError, BindError) as exc:
            _fail(str(exc), EXIT_CANNOT_LISTEN)
        scheme = "TLS" if config.api.tls is not None else "plaintext"
        log.info("API listening on %s (%s)", server.address, scheme)
        print(f"listening on {config.api.listen}", flush=True)
        freshness = asyncio.create_task(
            FreshnessMonitor(config, parts.store, pipeline.messaging).run(stop)
        )
        pruning = asyncio.create_task(
            prune_until_stopped(parts.store, config.storage.build_log_retention_days, stop)
        )
        await health.serving()
        await stop.wait()
        await health.draining()
        await server.stop(grace=5.0)
        await events.close()
        await freshness
        await pruning


def _fail(message: str, code: int) -> NoReturn:
    log.error("cannot start: %s", message)
    raise SystemExit(code)
