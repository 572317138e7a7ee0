"""A live pipeline on a real broker and real storage, in this process.

The git SourceControl server, the local BuildRunner, every stage worker, the
delay forwarder and the API run as asyncio tasks talking over real gRPC and
real Kafka, on a git repository the server reads in place. Used by the
end-to-end tests and the latency benchmark. The database must be migrated
already (the tests hand out copies of a migrated template). The extension
servers require a bearer token, as in production: each gets a random one,
written to a 0600 file that the configuration names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from harness.git_repos import WorkRepo
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import StovepipeConfig, config_from_mapping
from stovepipe.extensions.buildrunner.local import RunnerSettings
from stovepipe.extensions.buildrunner.local import serve as serve_runner
from stovepipe.extensions.hooks.reference import serve as serve_hooks
from stovepipe.extensions.projectmapper.config import serve as serve_mapper
from stovepipe.extensions.sourcecontrol.git import serve as serve_git
from stovepipe.extensions.sourcecontrol.git import served_from_config
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity
from stovepipe.messaging import DeliveryHandler
from stovepipe.runtime.buildwatch_worker import run_build_watch
from stovepipe.runtime.delay_worker import run_delay_forwarder
from stovepipe.runtime.event_feed import EventFeed
from stovepipe.runtime.hooks_worker import run_hooks_dispatcher
from stovepipe.runtime.pipeline import open_pipeline
from stovepipe.runtime.registry import STAGES
from stovepipe.runtime.sample_repo import build_targets
from stovepipe.runtime.stage_messaging import StageMessaging
from stovepipe.storage import Store
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

QUEUE = "e2e/main"
TERMINAL = {
    types_pb2.REQUEST_STATE_SUPERSEDED,
    types_pb2.REQUEST_STATE_SUCCEEDED,
    types_pb2.REQUEST_STATE_FAILED,
    types_pb2.REQUEST_STATE_CANCELLED,
}


@dataclass
class Live:
    config: StovepipeConfig
    store: Store
    bus: StageMessaging
    repo: WorkRepo
    stub: Any
    tmp: Path
    runner: Any = None
    hooks: Any = None
    api_address: str = ""

    async def ingest(self, queue: str = QUEUE) -> pb.IngestResponse:
        response: pb.IngestResponse = await self.stub.Ingest(
            pb.IngestRequest(queue=queue, trigger="e2e")
        )
        return response

    async def request(self, request_id: str) -> types_pb2.Request:
        response = await self.stub.GetRequest(pb.GetRequestRequest(request_id=request_id))
        request: types_pb2.Request = response.request
        return request

    async def wait_terminal(self, request_id: str, timeout_s: float = 90.0) -> types_pb2.Request:
        """Wait until the Request is terminal and, when it has a verdict, the fact is recorded."""

        async def done() -> types_pb2.Request | None:
            request = await self.request(request_id)
            if request.state not in TERMINAL:
                return None
            if request.state in (types_pb2.REQUEST_STATE_SUCCEEDED, types_pb2.REQUEST_STATE_FAILED):
                greenness = await self.stub.GetGreenness(
                    pb.GetGreennessRequest(queue=request.queue, uri=request.uri)
                )
                if greenness.status != pb.GREENNESS_STATUS_RECORDED:
                    return None
            return request

        result = await until(done, timeout_s=timeout_s, what=f"{request_id} terminal")
        assert result is not None
        return result


def live_queues(repo: Path, queues: int = 1, **queue: Any) -> list[dict[str, Any]]:
    """The ``queues`` section: ``e2e/main`` on ``main``, then ``e2e/main-<i>`` on ``q<i>``."""
    targets = queue.pop("targets", None) or build_targets()
    return [
        {
            "name": QUEUE if i == 0 else f"{QUEUE}-{i}",
            "source": {"repository": str(repo), "ref": "main" if i == 0 else f"q{i}"},
            "build": {"targets": targets},
            "promotion_ref": "verified-main" if i == 0 else f"verified-q{i}",
            **queue,
        }
        for i in range(queues)
    ]


def live_config(
    repo: Path,
    *,
    bootstrap: str,
    database_url: str,
    git: str,
    runner: str,
    queues: int = 1,
    workers: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
    git_token_file: Path | None = None,
    runner_token_file: Path | None = None,
    hooks_address: str | None = None,
    hooks_token_file: Path | None = None,
    mapper: str | None = None,
    mapper_token_file: Path | None = None,
    **queue: Any,
) -> StovepipeConfig:
    def endpoint(address: str, token_file: Path | None) -> dict[str, str]:
        return {"address": address, **({"token_file": str(token_file)} if token_file else {})}

    return config_from_mapping(
        {
            "storage": {"url": database_url},
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": f"e{uuid.uuid4().hex[:8]}.",
                "partitions": 2,
                # the suite's stacks slow their fetches 2 s after the last record
                # (the product waits 30 s): heads come in bursts, and fast fetches
                # between them were CPU taken from the tests beside this one
                "idle_after_seconds": 2,
                "idle_fetch_max_wait_ms": 200,
                **(kafka or {}),
            },
            "extensions": {
                "sourcecontrol": {"git": endpoint(git, git_token_file)},
                "buildrunner": {"local": endpoint(runner, runner_token_file)},
                **(
                    {
                        "hooks": {
                            kind: endpoint(hooks_address, hooks_token_file)
                            for kind in ("webhook", "kafka", "log")
                        }
                    }
                    if hooks_address
                    else {}
                ),
                **(
                    {"projectmapper": {"config": endpoint(mapper, mapper_token_file)}}
                    if mapper
                    else {}
                ),
            },
            "workers": {"buildsignal_poll_interval_seconds": 0.2, **(workers or {})},
            "queues": live_queues(repo, queues, **queue),
        },
        source="e2e",
    )


def write_token(path: Path) -> str:
    """A new random token, written to ``path`` readable by its owner only."""
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token)
    return token


@contextlib.asynccontextmanager
async def live_stack(
    tmp_path: Path,
    kafka_bootstrap: str,
    database_url: str,
    queues: int = 1,
    workers: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
    sandbox: bool = True,
    hooks_dispatcher: bool = True,
    wrap: Callable[[str, DeliveryHandler], DeliveryHandler] | None = None,
    **queue: Any,
) -> AsyncIterator[Live]:
    """The live pipeline; ``sandbox=False`` for targets that signal the test through
    files outside their checkout (the sandbox rightly forbids that). With ``hooks`` in
    the Queue settings, the reference hooks server runs too, and the hooks dispatcher
    unless ``hooks_dispatcher=False`` (a test that runs it as a process). ``wrap(topic,
    handler)`` replaces a stage's handler, to inject a fault where a test wants one."""
    repo = WorkRepo(tmp_path / "repo")
    git_token_file, runner_token_file = tmp_path / "ext-git.token", tmp_path / "ext-runner.token"
    git_token, runner_token = write_token(git_token_file), write_token(runner_token_file)
    served = served_from_config(
        config_from_mapping({"queues": live_queues(repo.path, queues, **queue)}, source="e2e")
    )
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
            settings=RunnerSettings(sandbox=sandbox),
            security=ServerSecurity(token=runner_token),
            source_control_security=ChannelSecurity(token=git_token),
        )
        stack.push_async_callback(runner.stop)
        hooks = None
        hooks_token_file = tmp_path / "ext-hooks.token"
        if queue.get("hooks"):
            hooks_token = write_token(hooks_token_file)
            hooks = await serve_hooks(
                "127.0.0.1:0",
                config=config_from_mapping(
                    {
                        "kafka": {"bootstrap_servers": kafka_bootstrap},
                        "queues": live_queues(repo.path, queues, **queue),
                    },
                    source="e2e",
                ),
                security=ServerSecurity(token=hooks_token),
            )
            stack.push_async_callback(hooks.stop)
        mapper_token_file = tmp_path / "ext-mapper.token"
        mapper = await serve_mapper(
            "127.0.0.1:0", security=ServerSecurity(token=write_token(mapper_token_file))
        )
        stack.push_async_callback(mapper.stop)
        config = live_config(
            repo.path,
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            git=git.address,
            runner=runner.address,
            queues=queues,
            workers=workers,
            kafka=kafka,
            git_token_file=git_token_file,
            runner_token_file=runner_token_file,
            hooks_address=hooks.address if hooks is not None else None,
            hooks_token_file=hooks_token_file if hooks is not None else None,
            mapper=mapper.address,
            mapper_token_file=mapper_token_file,
            **queue,
        )
        pipeline = await stack.enter_async_context(open_pipeline(config, "e2e"))
        parts = pipeline.parts
        bus = pipeline.messaging
        store = parts.store
        subscriptions = pipeline.subscriptions(*STAGES)
        if wrap is not None:
            subscriptions = [(t, g, wrap(t, h)) for t, g, h in subscriptions]
        await stack.enter_async_context(bus.consuming(subscriptions))
        stop = asyncio.Event()
        forwarder = asyncio.create_task(run_delay_forwarder(config, stop))

        async def stop_forwarder() -> None:
            stop.set()
            await forwarder

        stack.push_async_callback(stop_forwarder)
        watching = asyncio.Event()
        build_watch = asyncio.create_task(run_build_watch(config, stop, _set(watching)))
        stack.push_async_callback(_stop_task, build_watch, stop)
        await asyncio.wait_for(watching.wait(), 120)
        if hooks is not None and hooks_dispatcher:
            dispatching = asyncio.Event()
            dispatcher = asyncio.create_task(run_hooks_dispatcher(config, stop, _set(dispatching)))
            stack.push_async_callback(_stop_task, dispatcher, stop)
            await asyncio.wait_for(dispatching.wait(), 120)
        events = EventFeed(bus.settings, store)
        stack.push_async_callback(events.close)
        api = await serve_api(
            StovepipeApi(store, config, parts.ingester(), parts.revalidator(), events=events),
            "127.0.0.1:0",
        )
        stack.push_async_callback(api.stop)
        channel = grpc.aio.insecure_channel(api.address)
        stack.push_async_callback(channel.close, None)
        stub = pb_grpc.StovepipeServiceStub(channel)
        yield Live(
            config,
            store,
            bus,
            repo,
            stub,
            tmp_path,
            runner=runner,
            hooks=hooks,
            api_address=api.address,
        )


def _set(event: asyncio.Event) -> Callable[[], Any]:
    async def ready() -> None:
        event.set()

    return ready


async def _stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    try:
        await asyncio.wait_for(task, 30)
    except TimeoutError:
        task.cancel()
