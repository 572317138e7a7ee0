"""Run the git SourceControl as a gRPC server: ``serve`` for code, ``main`` for a process.

``main`` is what ``stovepipe ext git`` calls with its arguments; it prints one
``listening on HOST:PORT`` line once the server answers (handy with port 0),
serves until SIGINT or SIGTERM, then stops taking calls, lets the ones in
flight finish within a grace period, stops any fetch left running and exits 0.
It serves only the repositories of the Queues in ``--config`` and, through
``stovepipe.grpcutil.auth``, only callers that present its token or a client
certificate its CA signed (or anyone, on loopback, when it was given neither).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from stovepipe.extensions import auth_options
from stovepipe.extensions.sourcecontrol.git.backend import GitSettings, GitSourceControl
from stovepipe.extensions.sourcecontrol.git.mirror import default_cache_dir
from stovepipe.extensions.sourcecontrol.git.served import ServedRepositories, load_served
from stovepipe.extensions.sourcecontrol.servicer import SERVICE_NAME, SourceControlServicer
from stovepipe.grpcutil import GrpcServer, InsecureListen, ServerSecurity, start_server
from stovepipe.runtime.processes import stop_on_signals

DEFAULT_LISTEN = "127.0.0.1:50061"
SHUTDOWN_GRACE_SECONDS = 10.0
_log = logging.getLogger(__name__)


@dataclass
class GitServer(GrpcServer):
    """A started git SourceControl; ``stop`` also ends fetches nobody waits for any more."""

    backend: GitSourceControl

    async def stop(self, grace: float = 5.0) -> None:
        await super().stop(grace)
        await self.backend.close()


async def serve(
    address: str,
    *,
    served: ServedRepositories,
    cache_dir: Path | None = None,
    mirror_local_paths: bool = False,
    security: ServerSecurity | None = None,
) -> GitServer:
    """Start serving ``SourceControlService`` on ``address`` (port 0 picks a free one).

    Only the repositories (and promotions) in ``served`` are answered for.
    ``cache_dir`` holds the mirrors of remote repositories (default
    ``default_cache_dir()``); with ``mirror_local_paths`` local paths are
    mirrored and fetched like URLs instead of being read in place. ``security``
    says how callers authenticate; ``InsecureListen`` when it authenticates
    nobody and ``address`` is not loopback.
    """
    security = security or ServerSecurity()
    security.check_listen(address)
    backend = GitSourceControl(
        served, GitSettings(cache_dir=cache_dir, mirror_local_paths=mirror_local_paths)
    )
    started = await start_server(
        address,
        [SourceControlServicer(backend).register],
        [SERVICE_NAME],
        interceptors=security.interceptors(),
        credentials=security.credentials(),
    )
    return GitServer(
        server=started.server, port=started.port, health=started.health, backend=backend
    )


@dataclass(frozen=True)
class _Options:
    listen: str
    cache_dir: Path | None
    mirror_local_paths: bool
    served: ServedRepositories
    security: ServerSecurity


def _arguments(argv: list[str]) -> _Options:
    parser = argparse.ArgumentParser(
        prog="stovepipe ext git",
        description="SourceControl over the git repositories of the Queues in stovepipe.yaml, "
        "given by local path or URL.",
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("STOVEPIPE_CONFIG") or None,
        help="stovepipe.yaml whose Queues say which repositories are served and which "
        "promotion refs may be moved (default: $STOVEPIPE_CONFIG)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"where mirrors of remote repositories live (default {default_cache_dir()})",
    )
    parser.add_argument(
        "--mirror-local-paths",
        action="store_true",
        help="mirror and fetch local repositories too, instead of reading them in place",
    )
    auth_options.add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("--config is required: the server serves only the repositories of its Queues")
    try:
        served = load_served(args.config)
        security = auth_options.server_security(args)
    except ValueError as exc:
        parser.error(str(exc))
    return _Options(args.listen, args.cache_dir, args.mirror_local_paths, served, security)


async def _serve_until_signalled(options: _Options) -> int:
    stop = stop_on_signals()
    try:
        server = await serve(
            options.listen,
            served=options.served,
            cache_dir=options.cache_dir,
            mirror_local_paths=options.mirror_local_paths,
            security=options.security,
        )
    except InsecureListen as exc:
        print(f"stovepipe ext git: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, RuntimeError) as exc:
        _log.error("git SourceControl could not start on %s: %s", options.listen, exc)
        return 1
    if not options.served:
        _log.warning("no Queues in the configuration: every repository will be refused")
    for line in options.served.describe():
        _log.info("serving %s", line)
    host = options.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    _log.info("stopping: finishing calls in flight")
    await server.stop(grace=SHUTDOWN_GRACE_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code (2 for bad arguments or an
    unauthenticated non-loopback address, 1 when it cannot bind)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = _arguments(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_serve_until_signalled(options))
