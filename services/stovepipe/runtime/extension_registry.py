"""Per-Queue resolution of extension clients: the one place that knows which
extension server serves which Queue, and the one place that opens channels to them.

Channels are opened lazily and shared: one channel per address and credentials,
whatever the number of Queues it serves. Each endpoint's bearer token is read
once, when the registry is built, so a missing secret stops the process at
start-up instead of failing Requests one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import grpc

from stovepipe.config import Endpoint, QueueConfig, StovepipeConfig, resolve_secret
from stovepipe.config.errors import ConfigProblem, SecretUnavailable
from stovepipe.domain import InvalidInput
from stovepipe.extensions.buildrunner.client import BuildRunner, BuildRunnerClient
from stovepipe.extensions.hooks.client import HooksClient
from stovepipe.extensions.projectmapper import ProjectMapper
from stovepipe.extensions.projectmapper.client import ProjectMapperClient
from stovepipe.extensions.sourcecontrol.client import SourceControl, SourceControlClient
from stovepipe.grpcutil import ChannelSecurity, open_channel

_OPENED_KINDS = ("sourcecontrol", "buildrunner", "hooks", "projectmapper")


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _security(endpoint: Endpoint, owner: str, env: Mapping[str, str] | None) -> ChannelSecurity:
    ref = endpoint.secret_ref()
    token = None if ref is None else resolve_secret(dataclasses.replace(ref, owner=owner), env)
    return ChannelSecurity(
        token=token,
        ca_file=_path(endpoint.ca_file),
        cert_file=_path(endpoint.cert_file),
        key_file=_path(endpoint.key_file),
    )


class ExtensionRegistry:
    """Implements ``stovepipe.stages.ports.Extensions`` over gRPC channels.

    Raises ``SecretUnavailable`` listing every endpoint whose token cannot be read
    (``env`` defaults to the process environment).
    """

    def __init__(self, config: StovepipeConfig, env: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._channels: dict[tuple[str, ChannelSecurity], grpc.aio.Channel] = {}
        self._security: dict[tuple[str, str], ChannelSecurity] = {}
        problems: list[ConfigProblem] = []
        for kind in _OPENED_KINDS:
            endpoints: Mapping[str, Endpoint] = getattr(config.extensions, kind)
            for name, endpoint in endpoints.items():
                if not endpoint.address:
                    continue
                owner = f"extensions.{kind}.{name}"
                try:
                    self._security[(kind, name)] = _security(endpoint, owner, env)
                except SecretUnavailable as exc:
                    problems.extend(ConfigProblem(exc.source, p.message) for p in exc.problems)
        if problems:
            raise SecretUnavailable("extensions", problems)

    def _channel(self, kind: str, name: str, address: str) -> grpc.aio.Channel:
        key = (address, self._security[(kind, name)])
        if key not in self._channels:
            self._channels[key] = open_channel(address, security=key[1])
        return self._channels[key]

    def source_control(self, queue: QueueConfig) -> SourceControl:
        name = queue.source.extension
        endpoint = self._config.extensions.sourcecontrol.get(name)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(
                f"queue {queue.name}: no address for sourcecontrol extension {name!r}"
            )
        return SourceControlClient(self._channel("sourcecontrol", name, endpoint.address))

    def build_runner(self, queue: QueueConfig) -> BuildRunner:
        name = queue.build.runner
        endpoint = self._config.extensions.buildrunner.get(name)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(f"queue {queue.name}: no address for buildrunner extension {name!r}")
        return BuildRunnerClient(self._channel("buildrunner", name, endpoint.address))

    def hooks(self, kind: str) -> HooksClient:
        """The HooksService client of ``extensions.hooks.<kind>``."""
        endpoint = self._config.extensions.hooks.get(kind)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(f"no address for hooks extension {kind!r}")
        return HooksClient(self._channel("hooks", kind, endpoint.address))

    def project_mapper(self, queue: QueueConfig) -> ProjectMapper:
        name = queue.project_mapper
        endpoint = self._config.extensions.projectmapper.get(name)
        if endpoint is None or not endpoint.address:
            raise InvalidInput(
                f"queue {queue.name}: no address for projectmapper extension {name!r}"
            )
        return ProjectMapperClient(self._channel("projectmapper", name, endpoint.address))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
