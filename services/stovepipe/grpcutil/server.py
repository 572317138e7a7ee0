"""Start a grpc.aio server with standard health checking and reflection.

Every Stovepipe server (the API and each reference extension) starts through
here so they all answer `grpc.health.v1.Health` and reflection the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

Registrar = Callable[[grpc.aio.Server], None]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


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
) -> GrpcServer:
    """Bind ``address`` (``host:port``; port 0 picks a free one), register and start.

    ``service_names`` are the full names of the registered services; they are
    reported SERVING by the health service and listed by reflection. With
    ``serving=False`` they (and the server as a whole, ``""``) start NOT_SERVING
    until the caller sets them.
    """
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # a port already taken fails the start instead of being shared, so a
            # caller never reaches another server on "our" address
            ("grpc.so_reuseport", 0),
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
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *service_names):
        await health_servicer.set(name, status)
    await server.start()
    return GrpcServer(server=server, port=port, health=health_servicer)
