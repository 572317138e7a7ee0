"""The config-driven ProjectMapper: ``serve`` for code, ``main`` for a process.

It is stateless: every ``Map`` call carries the Queue's projects (path globs,
target patterns, weights) from the core's configuration, so one server serves
any number of Queues and a configuration change needs no restart of it.
``main`` prints ``listening on HOST:PORT`` once it answers, serves until
SIGINT or SIGTERM and exits 0. Callers authenticate as with every reference
extension (a token, a client certificate or both; loopback only without).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from stovepipe.extensions import auth_options
from stovepipe.extensions.projectmapper.mapping import map_projects
from stovepipe.extensions.projectmapper.model import MapInput, ProjectImpact
from stovepipe.extensions.projectmapper.servicer import SERVICE_NAME, ProjectMapperServicer
from stovepipe.grpcutil import GrpcServer, InsecureListen, ServerSecurity, start_server

DEFAULT_LISTEN = "127.0.0.1:50063"


class ConfigProjectMapper:
    """The reference attribution (``stovepipe.extensions.projectmapper.mapping``)."""

    async def map(self, request: MapInput) -> tuple[ProjectImpact, ...]:
        return map_projects(request)


async def serve(address: str, *, security: ServerSecurity | None = None) -> GrpcServer:
    """Start serving ``ProjectMapperService`` on ``address`` (port 0 picks a free one)."""
    security = security or ServerSecurity()
    security.check_listen(address)
    servicer = ProjectMapperServicer(ConfigProjectMapper())
    return await start_server(
        address,
        [servicer.register],
        [SERVICE_NAME],
        interceptors=security.interceptors(),
        credentials=security.credentials(),
    )


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stovepipe ext project-mapper",
        description="ProjectMapper that attributes targets and changed files to the projects "
        "each call carries (path globs, target patterns).",
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})"
    )
    auth_options.add_server_arguments(parser)
    return parser.parse_args(argv)


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        security = auth_options.server_security(args)
        server = await serve(args.listen, security=security)
    except (ValueError, InsecureListen, OSError) as exc:
        print(f"stovepipe ext project-mapper: error: {exc}", file=sys.stderr, flush=True)
        return 2
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{server.port}", flush=True)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the exit code (2 for bad arguments or an
    unauthenticated non-loopback address or port in use)."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_serve_until_signalled(args))
