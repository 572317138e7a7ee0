"""Contract suites an extension server runs against itself, and clients to reach it.

* :class:`~stovepipe.testing.contracts.sourcecontrol.SourceControlContract`
  with its :class:`~stovepipe.testing.contracts.sourcecontrol.Harness`;
* :class:`~stovepipe.testing.contracts.buildrunner.BuildRunnerContract`
  with its :class:`~stovepipe.testing.contracts.buildrunner.Harness`.

Stovepipe runs the same suites against its in-process fakes and its reference
servers (``tests/extensions/*/test_*_contract.py``). The suites import pytest
and pytest-asyncio: install them with ``pip install 'stovepipe[testing]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from stovepipe.extensions.buildrunner import BuildRunnerClient
from stovepipe.extensions.sourcecontrol import SourceControlClient
from stovepipe.grpcutil import open_channel

__all__ = ["build_runner_client", "source_control_client"]


@contextlib.asynccontextmanager
async def source_control_client(
    address: str, *, timeout_s: float = 60.0, credentials: grpc.ChannelCredentials | None = None
) -> AsyncIterator[SourceControlClient]:
    """The client core uses, on a channel to ``address`` (``host:port``), closed afterwards."""
    channel = open_channel(address, credentials=credentials)
    try:
        yield SourceControlClient(channel, timeout_s=timeout_s)
    finally:
        await channel.close(None)


@contextlib.asynccontextmanager
async def build_runner_client(
    address: str, *, timeout_s: float = 30.0, credentials: grpc.ChannelCredentials | None = None
) -> AsyncIterator[BuildRunnerClient]:
    """The client core uses, on a channel to ``address`` (``host:port``), closed afterwards."""
    channel = open_channel(address, credentials=credentials)
    try:
        yield BuildRunnerClient(channel, timeout_s=timeout_s)
    finally:
        await channel.close(None)
