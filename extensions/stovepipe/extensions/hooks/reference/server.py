"""The reference HooksService server: ``serve`` for code, ``main`` for ``stovepipe ext hooks``.

It serves three kinds of target, chosen by the subscription's ``kind``:
``webhook`` (signed HTTP POST, :mod:`.webhook`), ``kafka`` (a topic,
:mod:`.kafka_target`) and ``log`` (one JSON line per event on this server's
standard error, logger ``stovepipe.hooks.log``). A kind with another name is
served by what its subscription names: a ``url`` makes it a webhook, a
``topic`` a Kafka target, neither a log line.

Only subscriptions of the Queues in ``--config`` are delivered: a Deliver for
an unknown Queue or hook is refused (``NOT_FOUND``), so a caller that got hold
of the server's token still cannot make it POST to an address of its choosing.
Each call is one attempt; retries, order and bookkeeping are the dispatcher's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from stovepipe.config import StovepipeConfig, load_config
from stovepipe.config.errors import ConfigError
from stovepipe.config.hooks import HookConfig
from stovepipe.ext.v1 import hooks_pb2, hooks_pb2_grpc
from stovepipe.extensions import auth_options
from stovepipe.extensions.hooks.client import OUTCOMES_PB, DeliverResult, Outcome
from stovepipe.extensions.hooks.reference.kafka_target import KafkaTarget
from stovepipe.extensions.hooks.reference.webhook import post
from stovepipe.grpcutil import GrpcServer, InsecureListen, ServerSecurity, start_server
from stovepipe.hooks.events import data_of
from stovepipe.v1 import topics_pb2

SERVICE_NAME = hooks_pb2.DESCRIPTOR.services_by_name["HooksService"].full_name
DEFAULT_LISTEN = "127.0.0.1:50063"
SHUTDOWN_GRACE_SECONDS = 10.0

_log = logging.getLogger(__name__)
event_log = logging.getLogger("stovepipe.hooks.log")

Context = grpc.aio.ServicerContext[hooks_pb2.DeliverRequest, hooks_pb2.DeliverResponse]


def _target_of(hook: HookConfig) -> str:
    if hook.kind in ("webhook", "kafka", "log"):
        return hook.kind
    if hook.url is not None:
        return "webhook"
    if hook.topic is not None:
        return "kafka"
    return "log"


class HooksServicer(hooks_pb2_grpc.HooksServiceServicer):
    def __init__(self, config: StovepipeConfig, http: httpx.AsyncClient, kafka: KafkaTarget | None):
        self._config = config
        self._http = http
        self._kafka = kafka

    def register(self, server: grpc.aio.Server) -> None:
        hooks_pb2_grpc.add_HooksServiceServicer_to_server(self, server)

    async def Deliver(
        self, request: hooks_pb2.DeliverRequest, context: Context
    ) -> hooks_pb2.DeliverResponse:
        hook = None
        try:
            hook = self._config.queue(request.queue).hook(request.hook)
        except Exception:
            hook = None
        if hook is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no hook {request.hook[:100]!r} on queue {request.queue[:300]!r} in this "
                "server's configuration",
            )
            raise AssertionError("unreachable")
        if not request.delivery_id or len(request.delivery_id) > 256:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "delivery_id: 1 to 256 chars")
        result = await self._deliver(hook, request)
        return hooks_pb2.DeliverResponse(
            outcome=OUTCOMES_PB[result.outcome],
            retry_after_seconds=result.retry_after_s,
            detail=result.detail,
        )

    async def _deliver(self, hook: HookConfig, request: hooks_pb2.DeliverRequest) -> DeliverResult:
        target = _target_of(hook)
        if target == "webhook":
            return await post(self._http, hook, request.event, request.delivery_id)
        if target == "kafka":
            if self._kafka is None:
                return DeliverResult(Outcome.RETRY, "no kafka.bootstrap_servers configured")
            return await self._kafka.produce(hook, request.event, request.delivery_id)
        log_event(request.queue, hook.name, request.delivery_id, request.event)
        return DeliverResult(Outcome.DELIVERED, "logged")


def log_event(queue: str, hook: str, delivery_id: str, event: topics_pb2.HookEvent) -> None:
    """One JSON line per event: what a ``log`` subscription is for."""
    line = {
        "hook": hook,
        "queue": queue,
        "delivery_id": delivery_id,
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
        "time": event.time.ToJsonString(),
        "data": data_of(event),
    }
    event_log.info("%s", json.dumps(line, sort_keys=True))


@dataclass
class HooksServer(GrpcServer):
    http: httpx.AsyncClient | None = None
    kafka: KafkaTarget | None = None

    async def stop(self, grace: float = 5.0) -> None:
        await super().stop(grace)
        if self.http is not None:
            await self.http.aclose()
        if self.kafka is not None:
            await self.kafka.close()


async def serve(
    address: str, *, config: StovepipeConfig, security: ServerSecurity | None = None
) -> HooksServer:
    """Start serving ``HooksService`` for the subscriptions in ``config`` (port 0: a free one)."""
    security = security or ServerSecurity()
    security.check_listen(address)
    http = httpx.AsyncClient(follow_redirects=False)
    kafka = None
    if config.kafka.bootstrap_servers:
        from stovepipe.runtime.wiring import kafka_settings

        kafka = KafkaTarget(kafka_settings(config, "stovepipe-ext-hooks"))
    servicer = HooksServicer(config, http, kafka)
    started = await start_server(
        address,
        [servicer.register],
        [SERVICE_NAME],
        interceptors=security.interceptors(),
        credentials=security.credentials(),
    )
    return HooksServer(
        server=started.server, port=started.port, health=started.health, http=http, kafka=kafka
    )


@dataclass(frozen=True)
class _Options:
    listen: str
    config: StovepipeConfig
    security: ServerSecurity


def _arguments(argv: list[str]) -> _Options:
    parser = argparse.ArgumentParser(
        prog="stovepipe ext hooks",
        description="HooksService for the hooks of the Queues in stovepipe.yaml: signed "
        "webhooks, Kafka topics and log lines.",
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("STOVEPIPE_CONFIG") or None,
        help="stovepipe.yaml whose Queues' hooks say where events go (default: $STOVEPIPE_CONFIG)",
    )
    auth_options.add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("--config is required: the server delivers only to its Queues' hooks")
    try:
        config = load_config(args.config)
        security = auth_options.server_security(args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    return _Options(args.listen, config, security)


async def _serve_until_signalled(options: _Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        server = await serve(options.listen, config=options.config, security=options.security)
    except InsecureListen as exc:
        print(f"stovepipe ext hooks: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, RuntimeError) as exc:
        _log.error("hooks server could not start on %s: %s", options.listen, exc)
        return 1
    for queue in options.config.queues:
        for hook in queue.hooks:
            _log.info("serving %s hook %s (%s)", queue.name, hook.name, _target_of(hook))
    host = options.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    await server.stop(grace=SHUTDOWN_GRACE_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; exit 2 for bad arguments, 1 when it cannot bind."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = _arguments(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_serve_until_signalled(options))
