"""The BuildRunner contract as core sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from stovepipe.extensions.buildrunner.model import (
    BuildEnded,
    BuildReport,
    BuildState,
    LogChunk,
    TriggerSpec,
)


class BuildRunner(Protocol):
    """Starts builds and reports on them; satisfied by the gRPC client and the fake.

    Failures surface as ``grpc.aio.AioRpcError`` carrying the status code the
    runner's server would send (``NOT_FOUND`` for an unknown build or target,
    ``INVALID_ARGUMENT`` for a malformed trigger), so one classifier serves
    production and tests alike.
    """

    async def trigger(self, spec: TriggerSpec) -> str:
        """Start a build (or find the one with the same idempotency key); its id."""
        ...

    async def status(self, build_id: str) -> BuildReport: ...

    async def cancel(self, build_id: str) -> BuildState:
        """Stop the build if it runs; the state it ended in (a finished build is left alone)."""
        ...

    async def get_log(self, build_id: str, target: str) -> LogChunk: ...

    def watch_builds(self) -> AbstractAsyncContextManager[AsyncIterator[BuildEnded]]:
        """Every build that ends once the context is entered, as it ends (after its end is
        durable): ``async with runner.watch_builds() as ended: async for notice in ended``.

        Nothing is replayed: a build that ended before the watch was entered, or
        while the receiver was away, is found by polling ``status``. A runner that
        cannot push raises ``UNIMPLEMENTED`` (on entry or on the first step).
        """
        ...
