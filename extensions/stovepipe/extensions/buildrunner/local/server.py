"""Run the local runner as a gRPC server: ``serve`` for code, ``main`` for a process.

``main`` is what ``stovepipe ext local-runner`` calls with its arguments; it
prints one ``listening on HOST:PORT`` line once the server answers (handy with
port 0), serves until SIGINT or SIGTERM, then stops taking calls, stops
running builds (the next start runs them again), removes their checkouts and
exits 0. A ``Trigger`` runs
commands, so callers authenticate through ``stovepipe.grpcutil.auth`` (a token,
a client certificate or both); without either the server listens on loopback
only. The runner authenticates itself to its SourceControl server the same way.

Builds run in a bubblewrap sandbox unless ``--no-sandbox`` is given, which is
for trusted code only (the demo's sample repository). ``--hide PATH`` (any
number of times) keeps a directory or file out of the builds' sight: pass
Stovepipe's state directory (its database lives there).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from stovepipe.extensions import auth_options
from stovepipe.extensions.buildrunner.local.environment import DEFAULT_PATH
from stovepipe.extensions.buildrunner.local.locator import SourceControlLocator
from stovepipe.extensions.buildrunner.local.runner import LocalBuildRunner, RunnerSettings
from stovepipe.extensions.buildrunner.local.sandbox import INSTALL_HINT
from stovepipe.extensions.buildrunner.local.workspace import Workspace
from stovepipe.extensions.buildrunner.servicer import SERVICE_NAME, BuildRunnerServicer
from stovepipe.grpcutil import (
    ChannelSecurity,
    GrpcServer,
    InsecureListen,
    ServerSecurity,
    open_channel,
    start_server,
)
from stovepipe.runtime.processes import stop_on_signals

DEFAULT_LISTEN = "127.0.0.1:50062"
_log = logging.getLogger(__name__)


@dataclass
class LocalRunnerServer(GrpcServer):
    """A started local runner; ``stop`` also stops its builds (the next start runs them
    again) and closes its SourceControl channel."""

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
    security: ServerSecurity | None = None,
    source_control_security: ChannelSecurity | None = None,
) -> LocalRunnerServer:
    """Start serving ``BuildRunnerService`` on ``address`` (port 0 picks a free one).

    ``source_control`` is the ``HOST:PORT`` of the SourceControl server that
    minted the URIs this runner will be asked to build, reached with
    ``source_control_security``. Before the first call is answered the build
    records in ``work_dir`` are loaded (interrupted builds start again) and what
    earlier runs left behind is removed. ``security`` says how callers
    authenticate; ``InsecureListen`` when it authenticates nobody and
    ``address`` is not loopback.
    """
    security = security or ServerSecurity()
    security.check_listen(address)
    settings = settings or RunnerSettings()
    if settings.path is None:
        settings = dataclasses.replace(settings, path=os.environ.get("PATH", DEFAULT_PATH))
    _log_sandbox(settings)
    channel = open_channel(source_control, security=source_control_security)
    runner = LocalBuildRunner(SourceControlLocator(channel), Workspace(work_dir), settings)
    try:
        await runner.start()
        servicer = BuildRunnerServicer(runner)
        started = await start_server(
            address,
            [servicer.register],
            [SERVICE_NAME],
            interceptors=security.interceptors(),
            credentials=security.credentials(),
        )
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


def _log_sandbox(settings: RunnerSettings) -> None:
    if not settings.sandbox:
        _log.warning(
            "builds run WITHOUT a sandbox (--no-sandbox), as %s: only for code you trust",
            "root" if os.geteuid() == 0 else "the runner's user",
        )
    elif shutil.which(settings.bwrap) is None:
        _log.error(
            "%s not found: every build will end ERRORED until you %s and restart the runner",
            settings.bwrap,
            INSTALL_HINT,
        )


def _hidden_path(value: str) -> Path:
    path = Path(value).resolve()
    if path == Path("/"):
        raise argparse.ArgumentTypeError("hiding / would hide everything")
    return path


def _user(value: str) -> tuple[int, int]:
    uid, _, gid = value.partition(":")
    try:
        ids = (int(uid), int(gid or uid))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not UID or UID:GID") from None
    if min(ids) <= 0:
        raise argparse.ArgumentTypeError("the build user must not be root")
    return ids


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``security`` and ``source_control_security`` are resolved into them."""
    parser = argparse.ArgumentParser(
        prog="stovepipe ext local-runner",
        description="BuildRunner that checks commits out in git worktrees and runs targets "
        "as local processes.",
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})"
    )
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
    sandbox = parser.add_argument_group("sandbox")
    sandbox.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run targets as plain processes of the runner's user, without bubblewrap: "
        "only for code you trust",
    )
    sandbox.add_argument(
        "--hide",
        action="append",
        type=_hidden_path,
        default=[],
        metavar="PATH",
        help="a directory or file builds must not see (repeatable); pass Stovepipe's state "
        "directory. The work directory is always hidden.",
    )
    sandbox.add_argument(
        "--build-user",
        type=_user,
        default=RunnerSettings.build_user,
        metavar="UID[:GID]",
        help="who targets run as when the runner is root (default: 65534, nobody)",
    )
    sandbox.add_argument("--max-processes", type=int, default=RunnerSettings.max_processes)
    sandbox.add_argument(
        "--max-file-size-bytes", type=int, default=RunnerSettings.max_file_size_bytes
    )
    sandbox.add_argument("--max-open-files", type=int, default=RunnerSettings.max_open_files)
    auth_options.add_server_arguments(parser)
    auth_options.add_client_arguments(parser, "source-control", "SourceControl server")
    args = parser.parse_args(argv)
    try:
        args.security = auth_options.server_security(args)
        args.source_control_security = auth_options.client_security(args, "source-control")
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    settings = RunnerSettings(
        log_limit_bytes=args.log_limit_bytes,
        max_finished_builds=args.max_finished_builds,
        kill_grace_seconds=args.kill_grace_seconds,
        default_timeout_seconds=args.default_timeout_seconds,
        sandbox=not args.no_sandbox,
        hidden_paths=tuple(args.hide),
        build_user=args.build_user,
        max_processes=args.max_processes,
        max_file_size_bytes=args.max_file_size_bytes,
        max_open_files=args.max_open_files,
    )
    stop = stop_on_signals()
    try:
        server = await serve(
            args.listen,
            source_control=args.source_control,
            work_dir=args.work_dir,
            settings=settings,
            security=args.security,
            source_control_security=args.source_control_security,
        )
    except InsecureListen as exc:
        print(f"stovepipe ext local-runner: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, RuntimeError) as exc:
        _log.error("local runner could not start: %s", exc)
        return 1
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    _log.info("stopping: running builds stop now and run again at the next start")
    await server.stop(grace=settings.kill_grace_seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code (2 for bad arguments or an
    unauthenticated non-loopback address, 1 when it cannot start)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = _arguments(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_serve_until_signalled(args))
