"""``stovepipe up``: the whole product on one machine, as a tree of processes.

Order of start: broker (unless one is configured), schema migration, the git
SourceControl server, the local BuildRunner, the delay forwarder and every
stage worker, then the API. Each is its own process, exactly as in production,
so killing one (or the whole tree with Ctrl-C) behaves the way it would there.
Children get one generated configuration file with every address filled in.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from stovepipe.config import StovepipeConfig
from stovepipe.embedded.broker import EmbeddedBroker
from stovepipe.grpcutil import open_channel
from stovepipe.messaging import KafkaSettings
from stovepipe.runtime.broker_watch import EXIT_RESTART
from stovepipe.runtime.processes import free_port, stop_on_signals
from stovepipe.runtime.registry import STAGE_NAMES
from stovepipe.runtime.supervisor import ChildExited, ChildSpec, Supervisor
from stovepipe.storage.migrate import upgrade

STOP_MARGIN_S = 5.0
"""Beyond a worker's own stop bound: interpreter exit, closing storage and channels."""


def supervisor_stop_timeout(config: StovepipeConfig) -> float:
    """How long a child may take after SIGTERM before it is killed.

    A worker drains in-flight handlers for ``kafka.graceful_timeout_seconds`` and
    then closes its clients (``KafkaSettings.close_timeout_s``); killing it sooner
    would cut the drain short and turn a clean stop into a crash.
    """
    return config.kafka.graceful_timeout_seconds + KafkaSettings.close_timeout_s + STOP_MARGIN_S


async def _grpc_serving(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = open_channel(address)
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1.0
        )
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
    finally:
        await channel.close(None)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stovepipe.cli.main", *args]


@dataclass
class RunningStack:
    api_address: str
    bootstrap_servers: str
    database_url: str
    config_path: Path
    supervisor: Supervisor

    def table(self) -> Table:
        table = Table(title="stovepipe up", show_lines=False)
        table.add_column("component")
        table.add_column("pid", justify="right")
        table.add_column("address / log")
        for child in self.supervisor.children:
            table.add_row(
                child.spec.name, str(child.pid), child.spec.address or str(child.spec.log_path)
            )
        table.add_row("storage", "-", self.database_url)
        table.add_row("config", "-", str(self.config_path))
        return table


def _effective_config(
    config: StovepipeConfig,
    *,
    bootstrap: str,
    database_url: str,
    api_address: str,
    git_address: str,
    runner_address: str,
) -> dict[str, Any]:
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    data.setdefault("storage", {})["url"] = database_url
    data.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    data.setdefault("api", {})["listen"] = api_address
    extensions = data.setdefault("extensions", {})
    extensions.setdefault("sourcecontrol", {})["git"] = {"address": git_address}
    extensions.setdefault("buildrunner", {})["local"] = {"address": runner_address}
    return data


@asynccontextmanager
async def embedded_stack(
    config: StovepipeConfig, state_dir: Path, console: Console | None = None
) -> AsyncIterator[RunningStack]:
    """Start everything, yield where it runs, and stop it all on exit."""
    console = console or Console(stderr=True)
    state_dir = state_dir.resolve()  # noqa: ASYNC240 - start-up only
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | None = None
    supervisor = Supervisor(stop_timeout_s=supervisor_stop_timeout(config))
    try:
        bootstrap = config.kafka.bootstrap_servers
        if not bootstrap:
            broker = EmbeddedBroker(log_path=logs / "broker.log")
            await broker.start()
            bootstrap = broker.bootstrap_servers
            console.print(f"broker      Tansu (embedded, memory-only) at {bootstrap}")
        database_url = config.storage.url
        if database_url.startswith("sqlite") and ":///" in database_url:
            db_path = Path(database_url.split(":///", 1)[1])
            if not db_path.is_absolute():
                db_path = state_dir / db_path.name
            db_path.parent.mkdir(parents=True, exist_ok=True)
            database_url = f"sqlite+aiosqlite:///{db_path}"
        await asyncio.to_thread(upgrade, database_url)
        git_address = f"127.0.0.1:{free_port()}"
        runner_address = f"127.0.0.1:{free_port()}"
        api_address = config.api.listen
        config_path = state_dir / "stovepipe.effective.yaml"
        config_path.write_text(
            yaml.safe_dump(
                _effective_config(
                    config,
                    bootstrap=bootstrap,
                    database_url=database_url,
                    api_address=api_address,
                    git_address=git_address,
                    runner_address=runner_address,
                ),
                sort_keys=False,
            )
        )
        env = {"STOVEPIPE_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}
        await supervisor.start(
            ChildSpec(
                "ext git",
                _cli("ext", "git", "--listen", git_address, "--cache-dir", str(state_dir / "git")),
                logs / "ext-git.log",
                env,
                git_address,
                lambda: _grpc_serving(git_address),
            )
        )
        await supervisor.start(
            ChildSpec(
                "ext local-runner",
                _cli(
                    "ext",
                    "local-runner",
                    "--listen",
                    runner_address,
                    "--source-control",
                    git_address,
                    "--work-dir",
                    str(state_dir / "builds"),
                ),
                logs / "ext-local-runner.log",
                env,
                runner_address,
                lambda: _grpc_serving(runner_address),
            )
        )
        for stage in STAGE_NAMES:
            await supervisor.start(
                ChildSpec(
                    f"worker {stage}",
                    _cli("worker", stage, "--config", str(config_path)),
                    logs / f"worker-{stage}.log",
                    env,
                )
            )
        await supervisor.start(
            ChildSpec(
                "api",
                _cli("api", "--config", str(config_path)),
                logs / "api.log",
                env,
                api_address,
                lambda: _grpc_serving(api_address),
            )
        )
        yield RunningStack(api_address, bootstrap, database_url, config_path, supervisor)
    finally:
        await supervisor.stop()
        if broker is not None:
            await broker.stop()


async def run_embedded_stack(config: StovepipeConfig, state_dir: Path) -> int:
    """Run until Ctrl-C / SIGTERM or until a component dies; return the exit code."""
    console = Console()
    stop = stop_on_signals()
    try:
        async with embedded_stack(config, state_dir, console) as stack:
            console.print(stack.table())
            console.print(f"API ready at {stack.api_address}. Ctrl-C stops everything.")
            stopped = asyncio.ensure_future(stop.wait())
            while True:
                died = asyncio.ensure_future(stack.supervisor.wait_any_exit())
                done, _ = await asyncio.wait({stopped, died}, return_when=asyncio.FIRST_COMPLETED)
                if died not in done:
                    died.cancel()
                    break
                child = died.result()
                if child.process.returncode == EXIT_RESTART:
                    console.print(f"{child.spec.name} asked to be restarted; restarting")
                    await stack.supervisor.respawn(child)
                    continue
                stopped.cancel()
                console.print(f"[red]{stack.supervisor.describe_exit(child)}[/red]")
                return 1
            console.print("stopping ...")
    except (ChildExited, TimeoutError) as exc:
        console.print(f"[red]could not start the stack:[/red] {exc}")
        return 1
    console.print("stopped cleanly")
    return 0
