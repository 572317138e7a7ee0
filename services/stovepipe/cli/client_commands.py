"""Commands that talk to a running API: ingest, status, last-green, gate, revalidate.

Exit codes: 0 success (for ``gate``: recorded green), 1 recorded not green,
2 not recorded / still in flight, 3 the API refused or could not be reached,
4 unusable client options (a TLS file that cannot be read, a certificate without its key).

Every command takes the same connection options: ``--api``, ``--token-env``
and, for a server with TLS, ``--ca-file`` (the CA that signed the server's
certificate; ``--tls`` alone trusts the system's CAs) plus ``--cert`` and
``--key`` when the server requires client certificates.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
from rich.console import Console

from stovepipe.cli.project_table import project_table
from stovepipe.grpcutil import open_channel
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

EXIT_GREEN = 0
EXIT_NOT_GREEN = 1
EXIT_NOT_RECORDED = 2
EXIT_ERROR = 3
EXIT_USAGE = 4

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
console = Console()
err_console = Console(stderr=True)

ApiOption = Annotated[
    str, typer.Option("--api", envvar="STOVEPIPE_API", help="API address host:port.")
]
TokenEnvOption = Annotated[
    str,
    typer.Option(
        "--token-env",
        help="Name of the environment variable that holds the bearer token (if any).",
    ),
]
TlsOption = Annotated[
    bool,
    typer.Option(
        "--tls/--no-tls",
        envvar="STOVEPIPE_TLS",
        help="Use TLS (implied by --ca-file, --cert and --key); without --ca-file the "
        "system's CAs are trusted.",
    ),
]
CaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar="STOVEPIPE_CA_FILE",
        help="PEM file with the CA(s) that signed the API's certificate.",
    ),
]
CertOption = Annotated[
    Path | None,
    typer.Option(
        "--cert",
        envvar="STOVEPIPE_CLIENT_CERT",
        help="PEM client certificate chain, for an API that requires client certificates.",
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option("--key", envvar="STOVEPIPE_CLIENT_KEY", help="PEM private key of --cert."),
]


@dataclass(frozen=True)
class Target:
    """Where the API is and how to reach it, from the command's connection options."""

    api: str
    token_env: str
    tls: bool = False
    ca_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for plaintext; exits 4 on unusable files."""
        if not (self.tls or self.ca_file or self.cert or self.key):
            return None
        if (self.cert is None) != (self.key is None):
            _usage_error("--cert and --key go together: give both or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_read_pem("--ca-file", self.ca_file),
            private_key=_read_pem("--key", self.key),
            certificate_chain=_read_pem("--cert", self.cert),
        )


def _read_pem(option: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        _usage_error(f"{option}: cannot read {path}: {exc.strerror}")


def _usage_error(message: str) -> NoReturn:
    err_console.print(f"[red]error[/red] {message}")
    raise typer.Exit(EXIT_USAGE)


_TERMINAL = {
    types_pb2.REQUEST_STATE_SUPERSEDED,
    types_pb2.REQUEST_STATE_SUCCEEDED,
    types_pb2.REQUEST_STATE_FAILED,
    types_pb2.REQUEST_STATE_CANCELLED,
}


def _state_name(state: int) -> str:
    return types_pb2.RequestState.Name(state).removeprefix("REQUEST_STATE_").lower()  # type: ignore[arg-type]


def _origin_name(origin: int) -> str:
    return types_pb2.FactOrigin.Name(origin).removeprefix("FACT_ORIGIN_").lower()  # type: ignore[arg-type]


def _call(target: Target, fn: Callable[[Any, Metadata], Awaitable[T]]) -> T:
    credentials = target.credentials()

    async def run() -> T:
        metadata: Metadata = ()
        token = os.environ.get(target.token_env, "") if target.token_env else ""
        if token:
            metadata = (("authorization", f"Bearer {token}"),)
        async with open_channel(target.api, credentials=credentials) as channel:
            stub: Any = pb_grpc.StovepipeServiceStub(channel)
            return await fn(stub, metadata)

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        err_console.print(f"[red]error[/red] {exc.code().name}: {exc.details()}")
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            hint = "is the API running there, and does it use TLS? (--ca-file, --tls)"
            err_console.print(f"could not reach the API at {target.api}: {hint}")
        raise typer.Exit(EXIT_ERROR) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        queue: Annotated[str, typer.Argument(help="Queue name, e.g. monorepo/main.")],
        trigger: Annotated[str, typer.Option(help="Who reports the head.")] = "cli",
        wait: Annotated[bool, typer.Option(help="Wait until the Request is terminal.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
        api: ApiOption = "127.0.0.1:50051",
        token_env: TokenEnvOption = "STOVEPIPE_TOKEN",
        tls: TlsOption = False,
        ca_file: CaFileOption = None,
        cert: CertOption = None,
        key: KeyOption = None,
    ) -> None:
        """Report that QUEUE moved: resolve its head and start validating it."""
        target = Target(api, token_env, tls, ca_file, cert, key)
        response = _call(
            target,
            lambda stub, md: stub.Ingest(
                pb.IngestRequest(queue=queue, trigger=trigger), metadata=md
            ),
        )
        note = " (already known)" if response.duplicate else ""
        console.print(f"{response.request_id}  {response.uri}{note}")
        if wait:
            raise typer.Exit(_wait_and_show(target, response.request_id, timeout))

    @app.command()
    def status(
        request_id: Annotated[str, typer.Argument(help="request/<queue>/<n>")],
        project: Annotated[
            str, typer.Option(help="Show only this project's verdict (default: every scope).")
        ] = "",
        wait: Annotated[bool, typer.Option(help="Wait until the Request is terminal.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
        api: ApiOption = "127.0.0.1:50051",
        token_env: TokenEnvOption = "STOVEPIPE_TOKEN",
        tls: TlsOption = False,
        ca_file: CaFileOption = None,
        cert: CertOption = None,
        key: KeyOption = None,
    ) -> None:
        """Show one Request: state, strategy, build and reason, then a table of its
        commit's verdict per project (whole repository first) when projects are configured."""
        target = Target(api, token_env, tls, ca_file, cert, key)
        code = _wait_and_show(target, request_id, timeout) if wait else None
        request = _call(
            target,
            lambda stub, md: stub.GetRequest(
                pb.GetRequestRequest(request_id=request_id), metadata=md
            ),
        ).request
        if code is None:
            _show_request(request)
        _show_projects(target, request, project)
        if code is not None:
            raise typer.Exit(code)

    @app.command("last-green")
    def last_green(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        project: Annotated[str, typer.Option(help="Project (default: whole repository).")] = "",
        api: ApiOption = "127.0.0.1:50051",
        token_env: TokenEnvOption = "STOVEPIPE_TOKEN",
        tls: TlsOption = False,
        ca_file: CaFileOption = None,
        cert: CertOption = None,
        key: KeyOption = None,
    ) -> None:
        """Print the newest green commit URI of QUEUE (exit 2 when there is none yet)."""
        target = Target(api, token_env, tls, ca_file, cert, key)
        response = _call(
            target,
            lambda stub, md: stub.GetLastGreen(
                pb.GetLastGreenRequest(queue=queue, project=project), metadata=md
            ),
        )
        if not response.found:
            err_console.print(f"{queue}: no green commit recorded yet")
            raise typer.Exit(EXIT_NOT_RECORDED)
        console.print(response.uri)

    @app.command()
    def gate(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        uri: Annotated[str, typer.Argument(help="Commit URI to check.")],
        project: Annotated[str, typer.Option(help="Project (default: whole repository).")] = "",
        api: ApiOption = "127.0.0.1:50051",
        token_env: TokenEnvOption = "STOVEPIPE_TOKEN",
        tls: TlsOption = False,
        ca_file: CaFileOption = None,
        cert: CertOption = None,
        key: KeyOption = None,
    ) -> None:
        """Exit 0 only when URI is recorded green (1 recorded not green, 2 not recorded)."""
        target = Target(api, token_env, tls, ca_file, cert, key)
        response = _call(
            target,
            lambda stub, md: stub.GetGreenness(
                pb.GetGreennessRequest(queue=queue, uri=uri, project=project), metadata=md
            ),
        )
        if response.status != pb.GREENNESS_STATUS_RECORDED:
            err_console.print(f"NOT RECORDED: {uri} has no verdict yet (absence is not green)")
            raise typer.Exit(EXIT_NOT_RECORDED)
        fact = response.fact
        if fact.degree == 0.0:
            console.print(f"GREEN: {uri} ({fact.request_id})")
            raise typer.Exit(EXIT_GREEN)
        console.print(
            f"NOT GREEN: {uri} degree={fact.degree:g} origin={_origin_name(fact.origin)} "
            f"{fact.reason}"
        )
        raise typer.Exit(EXIT_NOT_GREEN)

    @app.command()
    def revalidate(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        uri: Annotated[str, typer.Argument(help="Commit URI whose verdict to question.")],
        flaky: Annotated[
            bool,
            typer.Option(
                "--flaky", help="Also re-validate a broken verdict of a real build (a flake)."
            ),
        ] = False,
        reason: Annotated[str, typer.Option(help="Why, kept in the Request's reason.")] = "",
        wait: Annotated[bool, typer.Option(help="Wait until the new attempt ends.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
        api: ApiOption = "127.0.0.1:50051",
        token_env: TokenEnvOption = "STOVEPIPE_TOKEN",
        tls: TlsOption = False,
        ca_file: CaFileOption = None,
        cert: CertOption = None,
        key: KeyOption = None,
    ) -> None:
        """Validate URI again (admin): allowed for fail_closed verdicts, and for broken ones
        with --flaky. Green is final."""
        target = Target(api, token_env, tls, ca_file, cert, key)
        response = _call(
            target,
            lambda stub, md: stub.Revalidate(
                pb.RevalidateRequest(queue=queue, uri=uri, flaky=flaky, reason=reason),
                metadata=md,
            ),
        )
        request = response.request
        note = "already in flight" if response.already_in_flight else "started"
        console.print(f"{request.id}  attempt {request.attempt} {note}")
        if wait:
            raise typer.Exit(_wait_and_show(target, request.id, timeout))


def _wait_and_show(target: Target, request_id: str, timeout: float) -> int:
    async def poll(stub: Any, md: Metadata) -> types_pb2.Request:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with console.status(f"waiting for {request_id}") as spinner:
            while True:
                response = await stub.GetRequest(
                    pb.GetRequestRequest(request_id=request_id), metadata=md
                )
                request: types_pb2.Request = response.request
                spinner.update(f"{request_id}: {_state_name(request.state)}")
                if request.state in _TERMINAL or loop.time() > deadline:
                    return request
                await asyncio.sleep(0.2)

    request = _call(target, poll)
    _show_request(request)
    if request.state not in _TERMINAL:
        err_console.print(f"still {_state_name(request.state)} after {timeout:g}s")
        return EXIT_NOT_RECORDED
    return EXIT_GREEN if request.state == types_pb2.REQUEST_STATE_SUCCEEDED else EXIT_NOT_GREEN


def _show_projects(target: Target, request: types_pb2.Request, project: str) -> None:
    scopes = _call(
        target,
        lambda stub, md: stub.GetProjectGreenness(
            pb.GetProjectGreennessRequest(queue=request.queue, uri=request.uri), metadata=md
        ),
    ).scopes
    if project:
        _call(  # INVALID_ARGUMENT naming the configured projects when it is not one
            target,
            lambda stub, md: stub.GetGreenness(
                pb.GetGreennessRequest(queue=request.queue, uri=request.uri, project=project),
                metadata=md,
            ),
        )
        scopes = [s for s in scopes if s.project == project]
    elif len(scopes) <= 1:
        return
    console.print(project_table(request.uri, scopes))


def _show_request(request: types_pb2.Request) -> None:
    strategy = (
        types_pb2.BuildStrategy.Name(request.build_strategy).removeprefix("BUILD_STRATEGY_").lower()
    )
    attempt = f"  (attempt {request.attempt})" if request.attempt > 1 else ""
    console.print(f"[bold]{request.id}[/bold]  {_state_name(request.state)}{attempt}")
    console.print(f"  uri       {request.uri}")
    console.print(
        f"  strategy  {strategy}" + (f" (base {request.base_uri})" if request.base_uri else "")
    )
    if request.build_id:
        console.print(f"  build     {request.build_id}")
    if request.reason:
        console.print(f"  reason    {request.reason}")
