"""``stovepipe api``: the gRPC API as a process, or as a group of processes on one port.

It also runs the :class:`~stovepipe.telemetry.freshness.FreshnessMonitor` and the
pruning of kept build logs: the API is the one process every deployment runs,
and it already reads storage.

With ``--processes N`` (N > 1) the command becomes a parent that takes the
port's lock (:mod:`.listener_lock`), starts N API processes that bind the
same port with ``SO_REUSEPORT`` (the kernel spreads connections over them:
one Python process is one core), serves readiness for the group, and stops
the group when it is stopped or when any member dies (its supervisor then
restarts the whole group). Members inherit the lock; only member 0 runs the
freshness monitor and the log pruning; member ``i`` serves ``/metrics`` on
the metrics port plus ``i``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

from stovepipe.api.gate_cache import GateCacheSettings
from stovepipe.api.server import StovepipeApi, connection_options, serve_api
from stovepipe.api.transport import TransportError, check_listener, server_credentials
from stovepipe.config import StovepipeConfig
from stovepipe.grpcutil import BindError, GrpcServer
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.health import WorkerHealth
from stovepipe.runtime.listener_lock import ListenerTaken, take_listener_lock
from stovepipe.runtime.log_retention import prune_until_stopped
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.processes import stop_on_signals
from stovepipe.telemetry.freshness import FreshnessMonitor
from stovepipe.telemetry.process import process_telemetry

log = logging.getLogger(__name__)

EXIT_MISCONFIGURED = 2
EXIT_CANNOT_LISTEN = 1
MAX_PROCESSES = 64
MEMBER_ENV = "STOVEPIPE_API_MEMBER"
"""Set by the parent of a group for each member: ``<index>/<size>``."""
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Member:
    """This process's place in an API group."""

    index: int
    size: int


def group_member() -> Member | None:
    """The group membership the parent gave this process, if any."""
    text = os.environ.get(MEMBER_ENV, "")
    index, _, size = text.partition("/")
    if not (index.isdigit() and size.isdigit()):
        return None
    return Member(int(index), int(size))


def listen_port(listen: str) -> int | None:
    """The TCP port of ``host:port`` / ``[v6]:port``; ``None`` for a Unix socket or port 0."""
    if listen.startswith("unix:"):
        return None
    port = listen.rpartition(":")[2]
    return int(port) if port.isdigit() and int(port) > 0 else None


async def start_api_server(
    config: StovepipeConfig, api: StovepipeApi, tokens: dict[str, str], *, reuse_port: bool = False
) -> GrpcServer:
    """Serve ``api`` on ``config.api.listen`` with TLS when configured; ``reuse_port`` for a
    member of an API group, which shares the port with its siblings.

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
        api,
        config.api.listen,
        tokens=tokens,
        credentials=credentials,
        options=options,
        reuse_port=reuse_port,
    )


async def run_api(
    config: StovepipeConfig,
    health_listen: str | None = None,
    *,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    processes: int = 1,
    config_path: str | None = None,
) -> None:
    """Serve until SIGTERM. With ``health_listen`` readiness is also served there, in
    plaintext, so a probe (``stovepipe up``, Kubernetes) needs no API credentials;
    with a metrics port (argument or ``telemetry.metrics_port``), ``/metrics``.
    ``processes`` above 1 runs the group described in the module docstring; its
    members load ``config_path`` (the default search when ``None``) themselves."""
    member = group_member()
    if processes > 1 and member is None:
        with process_telemetry(config, "api", metrics_port=0):
            await _run_group(config, processes, config_path, health_listen, metrics_port)
        return
    if member is not None:
        base = metrics_port if metrics_port is not None else config.telemetry.metrics_port
        metrics_port = base + member.index if base else 0
    with process_telemetry(config, "api", metrics_port=metrics_port, metrics_host=metrics_host):
        await _run_api(config, health_listen, member)


def _check_transport(config: StovepipeConfig) -> dict[str, str]:
    """The API's tokens, after refusing (exit 2) a listener it must not serve as configured:
    before anything connects, so a refusal costs nothing and says why at once."""
    tokens = config.api_tokens()
    try:
        check_listener(config.api, has_tokens=bool(tokens))
        server_credentials(config.api.tls)
    except TransportError as exc:
        _fail(str(exc), EXIT_MISCONFIGURED)
    return tokens


def _lock(port: int | None) -> socket.socket | None:
    if port is None:
        return None
    try:
        return take_listener_lock(port)
    except ListenerTaken as exc:
        _fail(str(exc), EXIT_CANNOT_LISTEN)


async def _run_api(
    config: StovepipeConfig, health_listen: str | None, member: Member | None
) -> None:
    tokens = _check_transport(config)
    lock = None if member is not None else _lock(listen_port(config.api.listen))
    stop = stop_on_signals()
    health = await WorkerHealth.open(health_listen)
    try:
        await _serve(config, tokens, stop, health, member)
    finally:
        await health.close()
        if lock is not None:
            lock.close()


async def _serve(
    config: StovepipeConfig,
    tokens: dict[str, str],
    stop: asyncio.Event,
    health: WorkerHealth,
    member: Member | None,
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
            server = await start_api_server(config, api, tokens, reuse_port=member is not None)
        except (TransportError, BindError) as exc:
            _fail(str(exc), EXIT_CANNOT_LISTEN)
        scheme = "TLS" if config.api.tls is not None else "plaintext"
        log.info("API listening on %s (%s)", server.address, scheme)
        print(f"listening on {config.api.listen}", flush=True)
        background = []
        if member is None or member.index == 0:  # once per installation, not per member
            background = [
                asyncio.create_task(
                    FreshnessMonitor(config, parts.store, pipeline.messaging).run(stop)
                ),
                asyncio.create_task(
                    prune_until_stopped(parts.store, config.storage.build_log_retention_days, stop)
                ),
            ]
        await health.serving()
        await stop.wait()
        await health.draining()
        await server.stop(grace=5.0)
        await events.close()
        for task in background:
            await task


async def _run_group(
    config: StovepipeConfig,
    processes: int,
    config_path: str | None,
    health_listen: str | None,
    metrics_port: int | None,
) -> None:
    _check_transport(config)
    port = listen_port(config.api.listen)
    if port is None:
        _fail(
            f"--processes {processes} needs a fixed TCP port in api.listen "
            f"(got {config.api.listen}); the processes share that one port",
            EXIT_MISCONFIGURED,
        )
    lock = _lock(port)
    assert lock is not None
    stop = stop_on_signals()
    health = await WorkerHealth.open(health_listen)
    members: list[asyncio.subprocess.Process] = []
    relays: list[asyncio.Task[None]] = []
    try:
        for index in range(processes):
            member = await _start_member(index, processes, config_path, metrics_port, lock)
            members.append(member)
        for member in members:
            await _until_listening(member, members)
            relays.append(asyncio.create_task(_relay(member)))
        print(f"listening on {config.api.listen} ({processes} processes)", flush=True)
        await health.serving()
        ended = [asyncio.create_task(m.wait()) for m in members]
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, *ended], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in ended:
            task.cancel()
        died = [m for m in members if m.returncode is not None]
        await health.draining()
        if died and not stop.is_set():
            log.error(
                "API process %d exited with %s; stopping the group", died[0].pid, died[0].returncode
            )
            raise SystemExit(EXIT_CANNOT_LISTEN)
    finally:
        await _stop_members(members)
        for relay in relays:
            relay.cancel()
        await health.close()
        lock.close()


async def _start_member(
    index: int, size: int, config_path: str | None, metrics_port: int | None, lock: socket.socket
) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "stovepipe.cli.main", "api"]
    if config_path:
        args += ["--config", config_path]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    env = {**os.environ, MEMBER_ENV: f"{index}/{size}"}
    return await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, pass_fds=(lock.fileno(),)
    )


async def _until_listening(
    member: asyncio.subprocess.Process, members: list[asyncio.subprocess.Process]
) -> None:
    """Wait for the member's "listening" line; if it exits first, so does the group, with
    its exit code (it has said why on stderr)."""
    assert member.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while line := await member.stdout.readline():
                if line.startswith(b"listening on"):
                    return
    except TimeoutError:
        log.error(
            "API process %d did not start listening within %.0fs", member.pid, READY_TIMEOUT_S
        )
        await _stop_members(members)
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    code = await member.wait()
    await _stop_members(members)
    raise SystemExit(code or EXIT_CANNOT_LISTEN)


async def _relay(member: asyncio.subprocess.Process) -> None:
    """Pass on what a member prints, so its pipe never fills."""
    assert member.stdout is not None
    while line := await member.stdout.readline():
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


async def _stop_members(members: list[asyncio.subprocess.Process]) -> None:
    for member in members:
        if member.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                member.terminate()
    for member in members:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await member.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                member.kill()
            await member.wait()


def _fail(message: str, code: int) -> NoReturn:
    log.error("cannot start: %s", message)
    raise SystemExit(code)
