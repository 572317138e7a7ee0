"""``stovepipe up``: the whole product on one machine, as a supervised tree of processes.

Order of start: broker (unless one is configured), schema migration, the git
SourceControl server, the local BuildRunner, the config ProjectMapper and the
reference hooks server, then every stage worker (the hooks dispatcher among them),
then the API with the web console. Each group starts at once and must be ready
before the next one
starts: the extensions and the API answer gRPC health on their own port, each
worker on its ``--health-port`` (SERVING once its consumers joined), the
console on ``/healthz`` (the API answers it). "API ready" is printed only when
every child is ready.

Each is its own process, exactly as in production, and the supervisor
(:mod:`stovepipe.runtime.supervisor`) restarts any of them that dies, with a
backoff, until one crash-loops; then the stack stops and exits 1. Ctrl-C or
SIGTERM stops everything within one grace period.

Children get one generated configuration file with every address filled in.
It holds the database URL with its password, so it is written 0600 in a 0700
directory, the environment overrides it already resolved are not passed on,
and the URL is shown to people with its password masked. The extension servers
require a bearer token that is new on every run: it reaches them and the core
through the environment only (``/proc/<pid>/environ`` is readable by its owner
alone, while the command line is not secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from stovepipe.config import StovepipeConfig
from stovepipe.config.env import PREFIX as ENV_OVERRIDE_PREFIX
from stovepipe.config.env import SHORTHANDS as ENV_OVERRIDE_SHORTHANDS
from stovepipe.console.process import console_ready, console_tls
from stovepipe.embedded.broker import EmbeddedBroker
from stovepipe.messaging import KafkaSettings
from stovepipe.redaction import redact, redact_url
from stovepipe.runtime.health import grpc_serving
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.registry import ALL, STAGE_NAMES
from stovepipe.runtime.supervisor import ChildExited, ChildSpec, CrashLoop, Supervisor
from stovepipe.storage.migrate import upgrade

GIT_TOKEN_ENV = "STOVEPIPE_EXT_GIT_TOKEN"
RUNNER_TOKEN_ENV = "STOVEPIPE_EXT_LOCAL_RUNNER_TOKEN"
HOOKS_TOKEN_ENV = "STOVEPIPE_EXT_HOOKS_TOKEN"
MAPPER_TOKEN_ENV = "STOVEPIPE_EXT_PROJECT_MAPPER_TOKEN"
CONSOLE_TOKEN_ENV = "STOVEPIPE_UP_CONSOLE_TOKEN"
"""A read token ``up`` makes for its console when the API requires tokens and the
configuration names none for the console: the console is a client like any other."""
CONSOLE_TOKEN_NAME = "stovepipe-up-console"

STOP_MARGIN_S = 5.0
"""Beyond a worker's own stop bound: interpreter exit, closing storage and channels."""


FAILED_START_GRACE_S = 3.0
"""How long children of a stack that failed to start get to exit before they are killed."""


def supervisor_stop_timeout(config: StovepipeConfig) -> float:
    """How long a child may take after SIGTERM before it is killed.

    A worker drains in-flight handlers for ``kafka.graceful_timeout_seconds`` and
    then closes its clients (``KafkaSettings.close_timeout_s``); killing it sooner
    would cut the drain short and turn a clean stop into a crash.
    """
    return config.kafka.graceful_timeout_seconds + KafkaSettings.close_timeout_s + STOP_MARGIN_S


class _Addresses:
    """Loopback addresses on free ports, never one handed out before nor a reserved one
    (the API's own port is free until the API binds it)."""

    def __init__(self, *reserved: str) -> None:
        self._taken = {a.rsplit(":", 1)[1] for a in reserved if ":" in a}

    def next(self) -> str:
        while (port := str(free_port())) in self._taken:
            continue
        self._taken.add(port)
        return f"127.0.0.1:{port}"


def extension_tokens() -> dict[str, str]:
    """A fresh random token per extension server, keyed by the variable that carries it."""
    return {
        name: secrets.token_urlsafe(32)
        for name in (
            GIT_TOKEN_ENV,
            RUNNER_TOKEN_ENV,
            HOOKS_TOKEN_ENV,
            MAPPER_TOKEN_ENV,
            CONSOLE_TOKEN_ENV,
        )
    }


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stovepipe.cli.main", *args]


@dataclass
class RunningStack:
    api_address: str
    bootstrap_servers: str
    database_url: str
    config_path: Path
    supervisor: Supervisor
    console_url: str = ""

    def table(self) -> Table:
        """Every child with its pid, address and log; the database URL without its password."""
        table = Table(title="stovepipe up", show_lines=False)
        table.add_column("component", no_wrap=True)
        table.add_column("pid", justify="right", no_wrap=True)
        table.add_column("address", overflow="fold")  # paths and URLs fold, never cut
        table.add_column("metrics", no_wrap=True)
        table.add_column("log", overflow="fold")
        for child in self.supervisor.children:
            metrics = f"http://{child.spec.metrics}/metrics" if child.spec.metrics else ""
            table.add_row(
                child.spec.name,
                str(child.pid),
                child.spec.address,
                metrics,
                str(child.spec.log_path),
            )
        table.add_row("storage", "-", redact_url(self.database_url), "", "")
        table.add_row("config", "-", str(self.config_path), "", "")
        return table


def write_effective_config(
    path: Path,
    config: StovepipeConfig,
    *,
    bootstrap: str,
    database_url: str,
    api_address: str,
    git_address: str,
    runner_address: str,
    hooks_address: str | None = None,
    mapper_address: str | None = None,
) -> None:
    """The configuration every child reads, addresses filled in, written 0600: it holds
    the database URL with its password. ``hooks_address`` serves every hooks kind that
    has no address of its own (the reference server serves webhook, kafka and log)."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    data.setdefault("storage", {})["url"] = database_url
    data.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    data.setdefault("api", {})["listen"] = api_address
    extensions = data.setdefault("extensions", {})
    extensions.setdefault("sourcecontrol", {})["git"] = {
        "address": git_address,
        "token_env": GIT_TOKEN_ENV,
    }
    extensions.setdefault("buildrunner", {})["local"] = {
        "address": runner_address,
        "token_env": RUNNER_TOKEN_ENV,
    }
    if hooks_address is not None:
        hooks = extensions.setdefault("hooks", {})
        for kind in hooks_kinds_to_serve(config):
            hooks[kind] = {"address": hooks_address, "token_env": HOOKS_TOKEN_ENV}
    if mapper_address is not None:
        extensions.setdefault("projectmapper", {})["config"] = {
            "address": mapper_address,
            "token_env": MAPPER_TOKEN_ENV,
        }
    console_api = config.console.api
    if config.api.tokens and console_api.token_env is None and console_api.token_file is None:
        data.setdefault("api", {}).setdefault("tokens", []).append(
            {"name": CONSOLE_TOKEN_NAME, "role": "read", "token_env": CONSOLE_TOKEN_ENV}
        )
        data.setdefault("console", {}).setdefault("api", {})["token_env"] = CONSOLE_TOKEN_ENV
    write_private(path, yaml.safe_dump(data, sort_keys=False))


def hooks_kinds_to_serve(config: StovepipeConfig) -> list[str]:
    """The ``extensions.hooks`` kinds without an address: the reference server takes them."""
    return sorted(
        kind for kind, endpoint in config.extensions.hooks.items() if not endpoint.address
    )


def private_dir(path: Path) -> Path:
    """``path`` created (with its parents) and closed to other users (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode otherwise
        out.write(text)


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the configuration overrides (``STOVEPIPE_DATABASE_URL``,
    ``STOVEPIPE__…``): the effective configuration already resolved them, and a
    child must read exactly that file (an override would name a relative SQLite
    path or an address other than the one ``up`` chose)."""
    return {
        name: value
        for name, value in environ.items()
        if name.upper() not in ENV_OVERRIDE_SHORTHANDS
        and not name.upper().startswith(ENV_OVERRIDE_PREFIX)
    }


def _extension(
    name: str, address: str, argv: list[str], log: Path, env: dict[str, str]
) -> ChildSpec:
    return ChildSpec(
        name, argv, log, env, address, functools.partial(grpc_serving, address), stop_last=True
    )


def _metrics_args(metrics: str) -> tuple[str, ...]:
    host, port = metrics.rsplit(":", 1)
    return ("--metrics-port", port, "--metrics-host", host)


def _worker(
    stage: str, health: str, metrics: str, config_path: Path, logs: Path, env: dict[str, str]
) -> ChildSpec:
    host, port = health.rsplit(":", 1)
    argv = _cli(
        "worker", stage, "--config", str(config_path), "--health-port", port,
        "--health-host", host, *_metrics_args(metrics),
    )  # fmt: skip
    return ChildSpec(
        f"worker {stage}",
        argv,
        logs / f"worker-{stage}.log",
        env,
        f"{health} (health)",
        functools.partial(grpc_serving, health),
        metrics=metrics,
    )


def ingress_children(
    config: StovepipeConfig,
    addresses: _Addresses,
    config_path: Path,
    logs: Path,
    env: dict[str, str],
) -> list[ChildSpec]:
    """The poller (when a Queue has ``poll:``) and the webhook receiver (when the
    ``webhooks`` section exists), each ready when its gRPC health says SERVING."""
    children: list[ChildSpec] = []
    wanted = [
        ("poller", "poller", bool(config.polled_queues), ""),
        (
            "webhooks",
            "webhooks",
            config.webhooks is not None,
            config.webhooks.listen if config.webhooks else "",
        ),
    ]
    for name, command, needed, shown in wanted:
        if not needed:
            continue
        health, metrics = addresses.next(), addresses.next()
        host, port = health.rsplit(":", 1)
        argv = _cli(
            command, "--config", str(config_path), "--health-port", port, "--health-host", host,
            *_metrics_args(metrics),
        )  # fmt: skip
        address = f"{shown} (health {health})" if shown else f"{health} (health)"
        children.append(
            ChildSpec(
                name,
                argv,
                logs / f"{name}.log",
                env,
                address,
                functools.partial(grpc_serving, health),
                metrics=metrics,
            )
        )
    return children


@asynccontextmanager
async def embedded_stack(
    config: StovepipeConfig,
    state_dir: Path,
    console: Console | None = None,
    *,
    report: Callable[[str], None] | None = None,
    sandbox: bool = True,
    per_stage_workers: bool = False,
) -> AsyncIterator[RunningStack]:
    """Start everything and wait until every child is ready; yield where it runs; stop
    it all on exit. Nothing is restarted unless the caller runs ``supervisor.supervise()``;
    ``report`` receives the supervisor's restarts and kills. ``sandbox=False`` runs
    builds as plain processes (``--no-sandbox`` on the local runner): only for code
    the operator trusts. The stages run in one process (``worker all``) unless
    ``per_stage_workers`` asks for one process per stage, as production runs them."""
    console = console or Console(stderr=True)
    state_dir = state_dir.resolve()  # noqa: ASYNC240 - start-up only
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = private_dir(state_dir / "logs")
    broker: EmbeddedBroker | None = None
    started = False
    supervisor = Supervisor(
        stop_timeout_s=supervisor_stop_timeout(config),
        report=report,
        base_env=child_environment(os.environ),
    )
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
        api_address = config.api.listen
        addresses = _Addresses(
            api_address,
            bootstrap,
            config.console.listen,
            *([config.webhooks.listen] if config.webhooks else []),
        )
        git_address = addresses.next()
        runner_address = addresses.next()
        hooks_address = addresses.next()
        mapper_address = addresses.next()
        config_path = state_dir / "stovepipe.effective.yaml"
        write_effective_config(
            config_path,
            config,
            bootstrap=bootstrap,
            database_url=database_url,
            api_address=api_address,
            git_address=git_address,
            runner_address=runner_address,
            hooks_address=hooks_address,
            mapper_address=mapper_address,
        )
        env = {
            "STOVEPIPE_CONFIG": str(config_path),
            "PYTHONUNBUFFERED": "1",
            **extension_tokens(),
        }
        git_argv = _cli(
            "ext", "git", "--listen", git_address, "--cache-dir", str(state_dir / "git"),
            "--config", str(config_path), "--token-env", GIT_TOKEN_ENV,
        )  # fmt: skip
        runner_argv = _cli(
            "ext", "local-runner", "--listen", runner_address, "--source-control", git_address,
            "--work-dir", str(state_dir / "builds"),
            "--token-env", RUNNER_TOKEN_ENV, "--source-control-token-env", GIT_TOKEN_ENV,
            # builds must not see the database, the configuration or the logs
            "--hide", str(state_dir),
            *(() if sandbox else ("--no-sandbox",)),
        )  # fmt: skip
        hooks_argv = _cli(
            "ext", "hooks", "--listen", hooks_address, "--config", str(config_path),
            "--token-env", HOOKS_TOKEN_ENV,
        )  # fmt: skip
        await supervisor.start_all(
            [
                _extension("ext git", git_address, git_argv, logs / "ext-git.log", env),
                _extension("ext hooks", hooks_address, hooks_argv, logs / "ext-hooks.log", env),
                _extension(
                    "ext local-runner",
                    runner_address,
                    runner_argv,
                    logs / "ext-local-runner.log",
                    env,
                ),
                _extension(
                    "ext project-mapper",
                    mapper_address,
                    _cli(
                        "ext",
                        "project-mapper",
                        "--listen",
                        mapper_address,
                        "--token-env",
                        MAPPER_TOKEN_ENV,
                    ),
                    logs / "ext-project-mapper.log",
                    env,
                ),
            ]
        )
        await supervisor.start_all(
            [
                _worker(stage, addresses.next(), addresses.next(), config_path, logs, env)
                for stage in (STAGE_NAMES if per_stage_workers else (ALL,))
            ]
        )
        # The API's readiness is read on a plaintext loopback health port, so it
        # works whatever api.tls and api.tokens ask of a real caller.
        api_health, api_metrics = addresses.next(), addresses.next()
        api_argv = _cli(
            "api", "--config", str(config_path),
            "--health-port", api_health.rsplit(":", 1)[1], "--health-host", "127.0.0.1",
            *_metrics_args(api_metrics),
        )  # fmt: skip
        # The console reads through the API: it starts with it, and its readiness
        # (/healthz) waits for the API to answer.
        explicit = "listen" in config.console.model_fields_set
        console_listen = config.console.listen if explicit else addresses.next()
        scheme = "https" if console_tls(config) is not None else "http"
        console_url = f"{scheme}://{console_listen}"
        console_metrics = addresses.next()
        console_argv = _cli(
            "console", "--config", str(config_path), "--listen", console_listen,
            *_metrics_args(console_metrics),
        )  # fmt: skip
        await supervisor.start_all(
            [
                ChildSpec(
                    "api",
                    api_argv,
                    logs / "api.log",
                    env,
                    api_address,
                    functools.partial(grpc_serving, api_health),
                    metrics=api_metrics,
                ),
                ChildSpec(
                    "console",
                    console_argv,
                    logs / "console.log",
                    env,
                    console_url,
                    functools.partial(console_ready, console_url),
                    metrics=console_metrics,
                ),
                *ingress_children(config, addresses, config_path, logs, env),
            ]
        )
        started = True
        yield RunningStack(
            api_address, bootstrap, database_url, config_path, supervisor, console_url
        )
    finally:
        # A start that failed has nothing in flight: do not wait a drain period for it.
        await supervisor.stop(None if started else FAILED_START_GRACE_S)
        if broker is not None:
            await broker.stop()


async def run_embedded_stack(
    config: StovepipeConfig,
    state_dir: Path,
    *,
    sandbox: bool = True,
    per_stage_workers: bool = False,
) -> int:
    """Run and supervise until Ctrl-C / SIGTERM (exit 0) or a crash loop (exit 1).

    A signal during start-up stops what has started at once instead of waiting
    for the readiness deadline (exit 1).
    """
    console = Console()
    stop = asyncio.Event()
    ready = asyncio.Event()
    serving = asyncio.create_task(
        _serve(config, state_dir, console, stop, ready, sandbox, per_stage_workers)
    )

    def on_signal() -> None:
        stop.set()
        if not ready.is_set():
            serving.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await serving
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        _say(console, "stopped before the stack was ready", "yellow")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _say(console: Console, text: str, style: str | None = None) -> None:
    """Print plain text: log tails and URLs are not rich markup."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


async def _serve(
    config: StovepipeConfig,
    state_dir: Path,
    console: Console,
    stop: asyncio.Event,
    ready: asyncio.Event,
    sandbox: bool,
    per_stage_workers: bool,
) -> int:
    def say(text: str, style: str | None = None) -> None:
        _say(console, text, style)

    try:
        async with embedded_stack(
            config,
            state_dir,
            console,
            report=lambda text: say(text, "yellow"),
            sandbox=sandbox,
            per_stage_workers=per_stage_workers,
        ) as stack:
            ready.set()
            console.print(stack.table())
            say(
                f"API ready at {stack.api_address}, console at {stack.console_url}. "
                "Ctrl-C stops everything."
            )
            code = await supervise_until_stopped(stack.supervisor, stop, say)
    except (ChildExited, TimeoutError) as exc:
        say(f"could not start the stack: {redact(str(exc))}", "red")
        return 1
    say("stopped cleanly" if code == 0 else "stopped")
    return code


async def supervise_until_stopped(
    supervisor: Supervisor, stop: asyncio.Event, say: Callable[[str, str | None], None]
) -> int:
    """Restart children until ``stop`` is set (0) or one of them crash-loops (1, said
    in red); either way, stop them all before returning."""
    supervising = asyncio.create_task(supervisor.supervise())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({supervising, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    code = 0
    if supervising.done() and isinstance(crash := supervising.exception(), CrashLoop):
        say(str(crash), "red")
        code = 1
    say("stopping ...", None)
    await supervisor.stop()
    with contextlib.suppress(CrashLoop):
        await supervising
    return code
