"""Per-Queue resolution of extension clients: the one place that knows which
extension server serves which Queue.

Channels are opened lazily and shared: one channel per address, whatever the
number of Queues it serves.
"""

from __future__ import annotations

import grpc

from stovepipe.config import QueueConfig, StovepipeConfig
from stovepipe.domain import InvalidInput
from stovepipe.extensions.buildrunner.client import BuildRunner, BuildRunnerClient
from stovepipe.extensions.sourcecontrol.client import SourceControl, SourceControlClient
from stovepipe.grpcutil import open_channel


class ExtensionRegistry:
    """Implements ``stovepipe.stages.ports.Extensions`` over gRPC channels."""

    def __init__(self, config: StovepipeConfig) -> None:
        self._config = config
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = open_channel(address)
        return self._channels[address]

    def source_control(self, queue: QueueConfig) -> SourceControl:
        name = queue.source.extension
        endpoint = self._config.extensions.sourcecontrol.get(name)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(
                f"queue {queue.name}: no address for sourcecontrol extension {name!r}"
            )
        return SourceControlClient(self._channel(endpoint.address))

    def build_runner(self, queue: QueueConfig) -> BuildRunner:
        name = queue.build.runner
        endpoint = self._config.extensions.buildrunner.get(name)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(f"queue {queue.name}: no address for buildrunner extension {name!r}")
        return BuildRunnerClient(self._channel(endpoint.address))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
