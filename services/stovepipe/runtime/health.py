"""Readiness of a process, as standard gRPC health checking (``grpc.health.v1.Health``).

The API and the extension servers answer health on their own port. A worker
has no server of its own, so ``stovepipe worker <stage> --health-port N``
serves health on port N, and only health (plus reflection):

- NOT_SERVING from the start until the worker does its job: its consumers
  have joined their groups and hold their partitions, or its runner (the delay
  forwarder, the sweeper) has started;
- SERVING from then on;
- NOT_SERVING again from SIGTERM on, while it drains, until the process exits.

The overall status (service ``""``) is the one to probe: ``stovepipe up``
waits for it before it reports the stack ready, the fault-injection stack
waits for it after a restart, and a Kubernetes ``grpc`` readiness probe on
the same port reads it the same way. ``stovepipe health ADDRESS`` (the
container image's HEALTHCHECK) asks the same question through
:func:`check_health`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stovepipe.grpcutil import GrpcServer, open_channel, start_server


class WorkerHealth:
    """A worker's readiness; without a port every call is a no-op.

    Once :meth:`draining` was called, :meth:`serving` no longer changes
    anything: a worker that is stopping never becomes ready again.
    """

    def __init__(self, server: GrpcServer | None) -> None:
        self._server = server
        self._draining = False

    @classmethod
    async def open(cls, listen: str | None) -> WorkerHealth:
        """Serve health on ``listen`` (``host:port``), NOT_SERVING; ``None`` serves nothing."""
        if not listen:
            return cls(None)
        return cls(await start_server(listen, [], [], serving=False))

    @property
    def address(self) -> str | None:
        return self._server.address if self._server is not None else None

    async def serving(self) -> None:
        if self._server is not None and not self._draining:
            await self._server.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def draining(self) -> None:
        self._draining = True
        if self._server is not None:
            await self._server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)


@dataclass(frozen=True)
class HealthAnswer:
    """What a health check learnt: whether the server is SERVING, and what it said
    (a status name such as ``NOT_SERVING``, or why it could not be asked)."""

    serving: bool
    said: str


async def check_health(
    address: str,
    *,
    service: str = "",
    timeout_s: float = 1.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> HealthAnswer:
    """Ask ``address`` for the health of ``service`` (``""``: the whole server).

    ``credentials`` (see :func:`tls_credentials`) connect over TLS. Never raises
    for an unreachable, slow or non-answering peer: that is a :class:`HealthAnswer`
    that is not serving and names the gRPC status code.
    """
    channel = open_channel(address, credentials=credentials)
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return HealthAnswer(False, f"no answer: {exc.code().name}: {exc.details() or ''}".strip())
    finally:
        await channel.close(None)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return HealthAnswer(response.status == health_pb2.HealthCheckResponse.SERVING, name)


def tls_credentials(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials: the server's CA (the system CAs when ``None``) and, for a
    mutual-TLS server, a client certificate and its key. ``OSError`` for an unreadable file."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file is not None else None,
        private_key=key_file.read_bytes() if key_file is not None else None,
        certificate_chain=cert_file.read_bytes() if cert_file is not None else None,
    )


async def grpc_serving(address: str, timeout_s: float = 1.0) -> bool:
    """True when ``address`` answers health checking with SERVING for the whole server.

    False when it answers anything else or cannot be reached within ``timeout_s``.
    """
    return (await check_health(address, timeout_s=timeout_s)).serving
