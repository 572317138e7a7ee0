"""Run the git SourceControl as a gRPC server: ``serve`` for code, ``main`` for a process.

``main`` is what ``stovepipe ext git`` calls with its arguments; it prints one
``listening on HOST:PORT`` line once the server answers (handy with port 0),
serves until SIGINT or SIGTERM, then stops taking calls, lets the ones in
flight finish within a grace period, stops any fetch left running and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from stovepipe.extensions.sourcecontrol.git.backend import GitSettings, GitSourceControl
from stovepipe.extensions.sourcecontrol.git.mirror import default_cache_dir
from stovepipe.extensions.sourcecontrol.servicer import SERVICE_NAME, SourceControlServicer
from stovepipe.grpcutil import GrpcServer, start_server
from stovepipe.runtime.processes import stop_on_signals

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
    cache_dir: Path | None = None,
    mirror_local_paths: bool = False,
) -> GitServer:
    """Start serving ``SourceControlService`` on ``address`` (port 0 picks a free one).

    ``cache_dir`` holds the mirrors of remote repositories (default
    ``default_cache_dir()``); with ``mirror_local_paths`` local paths are
    mirrored and fetched like URLs instead of being read in place.
    """
    backend = GitSourceControl(
        GitSettings(cache_dir=cache_dir, mirror_local_paths=mirror_local_paths)
    )
    started = await start_server(address, [SourceControlServicer(backend).register], [SERVICE_NAME])
    return GitServer(
        server=started.server, port=started.port, health=started.health, backend=backend
    )


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stovepipe ext git",
        description="SourceControl over git repositories given by local path or URL.",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on")
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
    return parser.parse_args(argv)


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    try:
        server = await serve(
            args.listen, cache_dir=args.cache_dir, mirror_local_paths=args.mirror_local_paths
        )
    except (OSError, RuntimeError) as exc:
        _log.error("git SourceControl could not start on %s: %s", args.listen, exc)
        return 1
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    _log.info("stopping: finishing calls in flight")
    await server.stop(grace=SHUTDOWN_GRACE_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code (2 for bad arguments)."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_serve_until_signalled(args))
