"""Helpers for the API tests: a served API, its errors, and a probe for its latency."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from harness.stages import Pipeline
from stovepipe.grpcutil import GrpcServer
from stovepipe.storage import Store
from stovepipe.v1 import stovepipe_service_pb2 as pb

Q = "mono/main"
PROJECT = "web"


@dataclass
class ServedApi:
    server: GrpcServer
    channel: grpc.aio.Channel
    stub: Any
    pipe: Pipeline

    @property
    def store(self) -> Store:
        return self.pipe.store

    def raw(self, method: str) -> Any:
        """A call of ``method`` that sends the bytes it is given, undecoded answers."""
        return self.channel.unary_unary(
            f"/stovepipe.v1.StovepipeService/{method}",
            request_serializer=None,
            response_deserializer=None,
        )


async def status_of(call: Any) -> grpc.aio.AioRpcError:
    """The error ``call`` fails with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@dataclass
class PingProbe:
    """Pings the API back to back while a test does something else; records each latency.

    Client and server share the test's event loop, so anything that blocks the
    server's loop shows up here as a slow Ping.
    """

    stub: Any
    latencies: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    """``loop.time()`` at which each Ping of ``latencies`` answered."""
    failures: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _wanted: float = float("inf")
    _enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> PingProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        # A few more Pings after the work, so a freeze at its very end is seen too.
        self._wanted = len(self.latencies) + 3
        try:
            await asyncio.wait_for(self._enough.wait(), timeout=30)
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # Each latency runs from the end of the previous Ping, so a freeze that starts
        # between two Pings is counted as well as one that starts during a Ping.
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            try:
                await self.stub.Ping(pb.PingRequest(), timeout=30)
            except grpc.aio.AioRpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")
            now = loop.time()
            self.latencies.append(now - last)
            self.ended.append(now)
            last = now
            if len(self.latencies) >= self._wanted:
                self._enough.set()
            await asyncio.sleep(0)

    def summary(self) -> str:
        if not self.latencies:
            return "no Ping answered"
        ms = sorted(x * 1000 for x in self.latencies)
        return (
            f"{len(ms)} Pings: median {statistics.median(ms):.1f} ms, "
            f"p95 {self.percentile(95):.1f} ms, p99 {self.percentile(99):.1f} ms, "
            f"max {ms[-1]:.1f} ms, failures {self.failures[:3]}"
        )

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency in milliseconds."""
        ms = sorted(x * 1000 for x in self.latencies)
        return ms[min(len(ms) - 1, int(len(ms) * p / 100))]

    def slowest(self) -> tuple[float, float]:
        """The slowest Ping as (started, answered) in ``loop.time()``."""
        i = max(range(len(self.latencies)), key=self.latencies.__getitem__)
        return self.ended[i] - self.latencies[i], self.ended[i]
