"""Start a grpc.aio server with standard health checking and reflection.

Every Stovepipe server (the API and each reference extension) starts through
here so they all answer `grpc.health.v1.Health` and reflection the same way,
and all bind their port exclusively: grpc sets ``SO_REUSEPORT`` by default, with
which a second server on a port already served binds too, reports ready, and
silently shares (or steals) the first one's connections. The one exception is
a member of an API group (``stovepipe api --processes N``), which shares its
port with its siblings on purpose, under the port's lock
(``stovepipe.runtime.listener_lock``).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

Registrar = Callable[[grpc.aio.Server], None]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
)


class BindError(OSError):
    """The server could not listen on its address; the message says why when it can."""


@dataclass
class GrpcServer:
    """A started server and the port it is bound to (useful with port 0)."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    address: str,
    registrars: Sequence[Registrar],
    service_names: Sequence[str],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[object, object]] = (),
    credentials: grpc.ServerCredentials | None = None,
    serving: bool = True,
    options: Sequence[tuple[str, int]] = (),
    reuse_port: bool = False,
) -> GrpcServer:
    """Bind ``address`` (``host:port``; port 0 picks a free one), register and start.

    ``service_names`` are the full names of the registered services; they are
    reported SERVING by the health service and listed by reflection. With
    ``serving=False`` they (and the server as a whole, ``""``) start NOT_SERVING
    until the caller sets them. ``options`` adds grpc channel arguments (keepalive,
    connection age) to the server's own; ``reuse_port`` lets processes that share one
    port on purpose bind it together (``SO_REUSEPORT``). Raises ``BindError`` (errno
    ``EADDRINUSE`` when another process holds the port).
    """
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            *(o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"),
            ("grpc.so_reuseport", int(reuse_port)),
            *options,
        ],
    )
    for register in registrars:
        register(server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise _bind_error(address)
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *service_names):
        await health_servicer.set(name, status)
    await server.start()
    return GrpcServer(server=server, port=port, health=health_servicer)


def _bind_error(address: str) -> BindError:
    """grpc only says that binding failed; a plain bind of the same address tells why."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host and port.isdigit() and int(port) != 0:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return BindError(
                    errno.EADDRINUSE,
                    f"cannot listen on {address}: address already in use "
                    "(is another Stovepipe server running there?)",
                )
            return BindError(exc.errno, f"cannot listen on {address}: {exc.strerror}")
    return BindError(errno.EADDRNOTAVAIL, f"cannot listen on {address}")
