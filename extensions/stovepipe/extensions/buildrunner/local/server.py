"""Run the local runner as a gRPC server: ``serve`` for code, ``main`` for a process.

``main`` is what ``stovepipe ext local-runner`` calls with its arguments; it
prints one ``listening on HOST:PORT`` line once the server answers (handy with
port 0), serves until SIGINT or SIGTERM, then stops taking calls, cancels
running builds, removes their checkouts and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from stovepipe.extensions.buildrunner.local.environment import DEFAULT_PATH
from stovepipe.extensions.buildrunner.local.locator import SourceControlLocator
from stovepipe.extensions.buildrunner.local.runner import LocalBuildRunner, RunnerSettings
from stovepipe.extensions.buildrunner.local.workspace import Workspace
from stovepipe.extensions.buildrunner.servicer import SERVICE_NAME, BuildRunnerServicer
from stovepipe.grpcutil import GrpcServer, open_channel, start_server
from stovepipe.runtime.processes import stop_on_signals

_log = logging.getLogger(__name__)


@dataclass
class LocalRunnerServer(GrpcServer):
    """A started local runner; ``stop`` also ends its builds and its SourceControl channel."""

    runner: LocalBuildRunner
    source_control_channel: grpc.aio.Channel

    async def stop(self, grace: float = 5.0) -> None:
        await super().stop(grace)
        await self.runner.close()
        await self.source_control_channel.close(None)


async def serve(
    address: str,
    *,
    source_control: str,
    work_dir: Path,
    settings: RunnerSettings | None = None,
) -> LocalRunnerServer:
    """Start serving ``BuildRunnerService`` on ``address`` (port 0 picks a free one).

    ``source_control`` is the ``HOST:PORT`` of the SourceControl server that
    minted the URIs this runner will be asked to build. Stale checkouts and
    logs in ``work_dir`` are removed before the first call is answered.
    """
    settings = settings or RunnerSettings()
    if settings.path is None:
        settings = dataclasses.replace(settings, path=os.environ.get("PATH", DEFAULT_PATH))
    channel = open_channel(source_control)
    runner = LocalBuildRunner(SourceControlLocator(channel), Workspace(work_dir), settings)
    try:
        await runner.start()
        servicer = BuildRunnerServicer(runner)
        started = await start_server(address, [servicer.register], [SERVICE_NAME])
    except BaseException:
        await runner.close()
        await channel.close(None)
        raise
    return LocalRunnerServer(
        server=started.server,
        port=started.port,
        health=started.health,
        runner=runner,
        source_control_channel=channel,
    )


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stovepipe ext local-runner",
        description="BuildRunner that checks commits out in git worktrees and runs targets "
        "as local processes.",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on")
    parser.add_argument(
        "--source-control", required=True, help="HOST:PORT of the SourceControl server"
    )
    parser.add_argument(
        "--work-dir", required=True, type=Path, help="mirrors, checkouts and logs go here"
    )
    parser.add_argument("--log-limit-bytes", type=int, default=RunnerSettings.log_limit_bytes)
    parser.add_argument(
        "--max-finished-builds", type=int, default=RunnerSettings.max_finished_builds
    )
    parser.add_argument(
        "--kill-grace-seconds", type=float, default=RunnerSettings.kill_grace_seconds
    )
    parser.add_argument(
        "--default-timeout-seconds", type=float, default=RunnerSettings.default_timeout_seconds
    )
    return parser.parse_args(argv)


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    settings = RunnerSettings(
        log_limit_bytes=args.log_limit_bytes,
        max_finished_builds=args.max_finished_builds,
        kill_grace_seconds=args.kill_grace_seconds,
        default_timeout_seconds=args.default_timeout_seconds,
    )
    stop = stop_on_signals()
    try:
        server = await serve(
            args.listen,
            source_control=args.source_control,
            work_dir=args.work_dir,
            settings=settings,
        )
    except (OSError, RuntimeError) as exc:
        _log.error("local runner could not start: %s", exc)
        return 1
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    _log.info("stopping: cancelling running builds")
    await server.stop(grace=settings.kill_grace_seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_serve_until_signalled(args))
