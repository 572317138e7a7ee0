"""A live pipeline (real broker, storage, git extension, runner, API) for the ingest tests,
with the Queues each test needs, plus the poller and webhook receiver run in this process."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from harness.live import TERMINAL, write_token
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import QueueConfig, StovepipeConfig, config_from_mapping
from stovepipe.config.webhooks import CodeHost
from stovepipe.domain import Request
from stovepipe.extensions.buildrunner.local import RunnerSettings
from stovepipe.extensions.buildrunner.local import serve as serve_runner
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.extensions.sourcecontrol.git import served_from_config
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity
from stovepipe.runtime.delay_worker import run_delay_forwarder
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.poller import Poller, PollerTuning
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.registry import STAGES
from stovepipe.runtime.sample_repo import SampleRepo, Step
from stovepipe.runtime.wiring import Collaborators
from stovepipe.stages.ports import queue_source
from stovepipe.storage import Store
from stovepipe.storage.migrate import upgrade
from stovepipe.storage.poll_leases import PollLeases
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2
from stovepipe.webhooks.receiver import WebhookReceiver

QUICK_TARGETS = [{"name": "check", "command": "test -f ok", "timeout_seconds": 60}]
"""Green while the commit has a file ``ok``: fast, and broken on demand."""


def queue(name: str, repo: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"repository": str(repo), "ref": "main"},
        "build": {"targets": QUICK_TARGETS},
        **extra,
    }


_commits = itertools.count()


def make_repo(path: Path) -> SampleRepo:
    """A repository whose first commit is green."""
    repo = SampleRepo(path).init()
    commit(repo, green=True)
    return repo


def commit(repo: SampleRepo, *, green: bool) -> str:
    """A new commit on ``main``, green (has ``ok``) or broken; returns its sha."""
    n = next(_commits)
    return repo.commit(
        Step(f"change {n}", {"n.txt": f"{n}\n", "ok": "1\n" if green else None}, green)
    )


@dataclass
class ResolveCounter:
    """Counts ResolveHead calls per Queue, across every poller replica of a test."""

    calls: Counter[str] = field(default_factory=Counter)


@dataclass
class Ingress:
    config: StovepipeConfig
    parts: Collaborators
    store: Store
    stub: Any
    tmp: Path
    resolves: ResolveCounter = field(default_factory=ResolveCounter)

    def queue(self, name: str) -> QueueConfig:
        return self.config.queue(name)

    def poller(
        self, holder: str = "replica-1", queues: list[QueueConfig] | None = None, **tuning: Any
    ) -> Poller:
        """A poller over the real git extension; every ResolveHead it makes is counted."""
        extensions = self.parts.extensions
        ingester = self.parts.ingester()
        counter = self.resolves

        async def resolve(q: QueueConfig, timeout_s: float) -> str:
            counter.calls[q.name] += 1
            return await extensions.source_control(q).resolve_head(
                queue_source(q), timeout_s=timeout_s
            )

        async def ingest(q: QueueConfig, head: str, trigger: str) -> None:
            await ingester.ingest(q.name, trigger, resolved_uri=head)

        return Poller(
            queues if queues is not None else list(self.config.polled_queues),
            PollLeases(self.store.engine),
            resolve,
            ingest,
            holder=holder,
            tuning=PollerTuning(**{"jitter_max_s": 0.05, "backoff_initial_s": 0.5, **tuning}),
        )

    @asynccontextmanager
    async def running(self, *pollers: Poller) -> AsyncIterator[None]:
        """The pollers run (start-up poll done) inside the block, stopped after it."""
        stop = asyncio.Event()
        started = [asyncio.Event() for _ in pollers]

        def on_start(event: asyncio.Event) -> Any:
            async def mark() -> None:
                event.set()

            return mark

        tasks = [
            asyncio.create_task(p.run(stop, on_start(e)))
            for p, e in zip(pollers, started, strict=True)
        ]
        try:
            await until(
                lambda: all(e.is_set() for e in started), timeout_s=60, what="pollers started"
            )
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    @asynccontextmanager
    async def webhooks(
        self, secrets: Mapping[CodeHost, str], max_body_bytes: int = 64 * 1024
    ) -> AsyncIterator[tuple[str, WebhookReceiver]]:
        """The receiver on a free loopback port: yields its base URL."""
        listen = f"127.0.0.1:{free_port()}"
        hooks = config_from_mapping(
            {
                "webhooks": {
                    "listen": listen,
                    "max_body_bytes": max_body_bytes,
                    "ingest_timeout_seconds": 60,  # 50 deliveries at once on a loaded machine
                    **{host: {"secret_env": f"HOOK_{host.upper()}"} for host in secrets},
                }
            }
        ).webhooks
        assert hooks is not None
        ingester = self.parts.ingester()

        async def ingest(name: str, trigger: str, details: Mapping[str, str]) -> str:
            return (await ingester.ingest(name, trigger, details=details)).request.id

        receiver = WebhookReceiver(hooks, secrets, self.config.queues, ingest)
        runner = web.AppRunner(receiver.app(), access_log=None)
        await runner.setup()
        host, port = listen.rsplit(":", 1)
        await web.TCPSite(runner, host, int(port)).start()
        try:
            yield f"http://{listen}", receiver
        finally:
            await runner.cleanup()

    async def requests_of(self, name: str) -> list[Request]:
        """The Queue's Requests, oldest first."""
        return await self.store.list_requests(name, newest_first=False)

    async def wait_terminal(self, request_id: str, timeout_s: float = 120.0) -> types_pb2.Request:
        async def done() -> types_pb2.Request | None:
            answer = await self.stub.GetRequest(pb.GetRequestRequest(request_id=request_id))
            got: types_pb2.Request = answer.request
            if got.state not in TERMINAL:
                return None
            if got.state in (types_pb2.REQUEST_STATE_SUCCEEDED, types_pb2.REQUEST_STATE_FAILED):
                greenness = await self.stub.GetGreenness(
                    pb.GetGreennessRequest(queue=got.queue, uri=got.uri)
                )
                if greenness.status != pb.GREENNESS_STATUS_RECORDED:
                    return None
            return got

        result: types_pb2.Request = await until(
            done, timeout_s=timeout_s, what=f"{request_id} terminal"
        )
        return result


@asynccontextmanager
async def ingress_stack(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, queues: list[dict[str, Any]]
) -> AsyncIterator[Ingress]:
    """Every stage (the upstream stage included) consuming, the API serving, over the
    real git extension and the local runner (unsandboxed: the targets are trivial)."""
    await asyncio.to_thread(upgrade, database_url)
    git_token_file, runner_token_file = tmp_path / "ext-git.token", tmp_path / "ext-runner.token"
    git_token, runner_token = write_token(git_token_file), write_token(runner_token_file)
    served = served_from_config(config_from_mapping({"queues": queues}, source="ingest"))
    async with AsyncExitStack() as stack:
        git = await serve_git(
            "127.0.0.1:0",
            served=served,
            cache_dir=tmp_path / "git-cache",
            security=ServerSecurity(token=git_token),
        )
        stack.push_async_callback(git.stop)
        runner = await serve_runner(
            "127.0.0.1:0",
            source_control=git.address,
            work_dir=tmp_path / "builds",
            settings=RunnerSettings(sandbox=False),
            security=ServerSecurity(token=runner_token),
            source_control_security=ChannelSecurity(token=git_token),
        )
        stack.push_async_callback(runner.stop)
        config = config_from_mapping(
            {
                "storage": {"url": database_url},
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "topic_prefix": f"i{uuid.uuid4().hex[:8]}.",
                    "partitions": 1,
                },
                "extensions": {
                    "sourcecontrol": {
                        "git": {"address": git.address, "token_file": str(git_token_file)}
                    },
                    "buildrunner": {
                        "local": {"address": runner.address, "token_file": str(runner_token_file)}
                    },
                },
                "workers": {"buildsignal_poll_interval_seconds": 0.2},
                "queues": queues,
            },
            source="ingest",
        )
        pipeline = await stack.enter_async_context(open_pipeline(config, "ingest-test"))
        parts = pipeline.parts
        await stack.enter_async_context(
            pipeline.messaging.consuming(pipeline.subscriptions(*STAGES))
        )
        stop = asyncio.Event()
        forwarder = asyncio.create_task(run_delay_forwarder(config, stop))

        async def stop_forwarder() -> None:
            stop.set()
            await forwarder

        stack.push_async_callback(stop_forwarder)
        events = EventFeed(pipeline.messaging.settings, parts.store)
        stack.push_async_callback(events.close)
        api = await serve_api(
            StovepipeApi(parts.store, config, parts.ingester(), parts.revalidator(), events=events),
            "127.0.0.1:0",
        )
        stack.push_async_callback(api.stop)
        channel = grpc.aio.insecure_channel(api.address)
        stack.push_async_callback(channel.close, None)
        yield Ingress(config, parts, parts.store, pb_grpc.StovepipeServiceStub(channel), tmp_path)
