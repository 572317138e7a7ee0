"""``stovepipe worker --health-port``: gRPC health that says when a worker is ready."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc

from stovepipe.grpcutil import open_channel
from stovepipe.runtime.health import WorkerHealth, grpc_serving
from stovepipe.runtime.processes import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(address: str) -> int:
    channel = open_channel(address)
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5.0
        )
        return int(response.status)
    finally:
        await channel.close(None)


async def test_not_serving_until_ready_serving_then_not_serving_for_good_once_draining() -> None:
    address = f"127.0.0.1:{free_port()}"
    health = await WorkerHealth.open(address)
    try:
        assert await _status(address) == NOT_SERVING  # up, but not consuming yet
        assert not await grpc_serving(address)
        await health.serving()
        assert await _status(address) == SERVING
        assert await grpc_serving(address)
        await health.draining()
        assert await _status(address) == NOT_SERVING
        await health.serving()  # a draining worker never becomes ready again
        assert await _status(address) == NOT_SERVING
    finally:
        await health.close()
    assert not await grpc_serving(address)  # nobody answering is not serving either


async def test_without_a_port_readiness_is_not_served() -> None:
    health = await WorkerHealth.open(None)
    assert health.address is None
    await health.serving()
    await health.draining()
    await health.close()
