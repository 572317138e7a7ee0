"""``stovepipe webhooks``: the push-webhook receiver as a process.

Secrets are read once at start from the variables or files the ``webhooks``
section names (a missing one stops the process with exit 2, naming it, never
its value). Readiness is ``GET /healthz`` on the receiver itself and, with
``--health-port``, gRPC health like every other process (what ``stovepipe up``
waits for).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from aiohttp import web

from stovepipe.config import ConfigProblem, SecretUnavailable, StovepipeConfig, resolve_secret
from stovepipe.config.webhooks import CodeHost
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.telemetry.process import process_telemetry
from stovepipe.webhooks.receiver import WebhookReceiver

log = logging.getLogger(__name__)

EXIT_MISCONFIGURED = 2
EXIT_CANNOT_LISTEN = 1


def webhook_secrets(config: StovepipeConfig) -> dict[CodeHost, str]:
    """Each configured host's secret; ``SecretUnavailable`` naming every one that is not."""
    hooks = config.webhooks
    if hooks is None:
        return {}
    secrets: dict[CodeHost, str] = {}
    problems: list[ConfigProblem] = []
    for host, ref in hooks.hosts().items():
        try:
            secrets[host] = resolve_secret(ref.secret_ref(host))
        except SecretUnavailable as exc:
            problems.extend(ConfigProblem(exc.source, p.message) for p in exc.problems)
    if problems:
        raise SecretUnavailable("webhooks", problems)
    return secrets


async def run_webhooks(
    config: StovepipeConfig,
    health_listen: str | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Serve deliveries until SIGTERM; with a metrics port (argument or
    ``telemetry.metrics_port``), serve ``/metrics``."""
    with process_telemetry(
        config, "webhooks", metrics_port=metrics_port, metrics_host=metrics_host
    ):
        await _serve(config, health_listen)


async def _serve(config: StovepipeConfig, health_listen: str | None) -> None:
    hooks = config.webhooks
    if hooks is None:
        log.error("cannot start: the configuration has no webhooks section")
        raise SystemExit(EXIT_MISCONFIGURED)
    try:
        secrets = webhook_secrets(config)
    except SecretUnavailable as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(EXIT_MISCONFIGURED) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = await WorkerHealth.open(health_listen)
    try:
        async with open_pipeline(config, "stovepipe-webhooks") as pipeline:
            ingester = pipeline.parts.ingester()

            async def ingest(queue: str, trigger: str, details: Mapping[str, str]) -> str:
                result = await ingester.ingest(queue, trigger, details=details)
                return result.request.id

            receiver = WebhookReceiver(hooks, secrets, config.queues, ingest)
            runner = web.AppRunner(receiver.app(), access_log=None)
            await runner.setup()
            host, port = hooks.listen.rsplit(":", 1)
            site = web.TCPSite(runner, host.strip("[]"), int(port))
            try:
                await site.start()
            except OSError as exc:
                log.error("cannot listen on %s: %s", hooks.listen, exc.strerror)
                await runner.cleanup()
                raise SystemExit(EXIT_CANNOT_LISTEN) from None
            log.info("webhooks receiver listening on %s (%s)", hooks.listen, ", ".join(secrets))
            print(f"webhooks listening on {hooks.listen}", flush=True)
            await health.serving()
            await stop.wait()
            await health.draining()
            await runner.cleanup()
    finally:
        await health.close()
