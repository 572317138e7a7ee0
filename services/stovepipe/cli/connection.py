"""How a CLI command reaches the API: six options, one :class:`Target`, one call.

Every command that talks to a running API takes the same connection options
(``--api``, ``--token-env``, ``--tls``, ``--ca-file``, ``--cert``, ``--key``).
They are declared once here: a command decorated with :func:`connection_options`
asks for ``target: Target`` and Typer shows the six options after the command's
own, with the same flags, defaults, environment variables and help everywhere.
Typer has no notion of a parameter object, so the decorator rewrites the
command's signature instead of each command spelling the options out.

Exit codes for a call that fails: 3 the API could not answer, 4 the caller's
input (an invalid argument, an unknown name, an unreadable TLS file).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import grpc
import typer

from stovepipe.cli.output import note
from stovepipe.grpcutil import open_channel
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

EXIT_ERROR = 3
EXIT_USAGE = 4
DEFAULT_API = "127.0.0.1:50051"

T = TypeVar("T")
P = ParamSpec("P")
Metadata = tuple[tuple[str, str], ...]
_INPUT_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)

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


def usage_error(message: str) -> NoReturn:
    """Say what is wrong with the caller's input and exit 4."""
    note(f"[red]error[/red] {message}")
    raise typer.Exit(EXIT_USAGE)


@dataclass(frozen=True)
class Target:
    """Where the API is and how to reach it, from the command's connection options."""

    api: str = DEFAULT_API
    token_env: str = "STOVEPIPE_TOKEN"
    tls: bool = False
    ca_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for plaintext; exits 4 on unusable files."""
        if not (self.tls or self.ca_file or self.cert or self.key):
            return None
        if (self.cert is None) != (self.key is None):
            usage_error("--cert and --key go together: give both or neither")
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
        usage_error(f"{option}: cannot read {path}: {exc.strerror}")


_KW = inspect.Parameter.KEYWORD_ONLY
_DEFAULTS = Target()
_OPTIONS = [
    inspect.Parameter("api", _KW, annotation=ApiOption, default=_DEFAULTS.api),
    inspect.Parameter("token_env", _KW, annotation=TokenEnvOption, default=_DEFAULTS.token_env),
    inspect.Parameter("tls", _KW, annotation=TlsOption, default=_DEFAULTS.tls),
    inspect.Parameter("ca_file", _KW, annotation=CaFileOption, default=_DEFAULTS.ca_file),
    inspect.Parameter("cert", _KW, annotation=CertOption, default=_DEFAULTS.cert),
    inspect.Parameter("key", _KW, annotation=KeyOption, default=_DEFAULTS.key),
]
_OPTION_NAMES = [p.name for p in _OPTIONS]


def connection_options(command: Callable[P, T]) -> Callable[..., T]:
    """Give ``command`` (which takes ``target: Target``) the six connection options.

    The options come after the command's own in ``--help``; the command is called
    with them gathered into one :class:`Target`.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "target"]
    if len(own) == len(signature.parameters):
        raise TypeError(f"{command.__name__} must take `target: Target`")

    @functools.wraps(command)
    def with_target(*args: Any, **kwargs: Any) -> T:
        target = Target(*(kwargs.pop(name) for name in _OPTION_NAMES))
        return command(*args, target=target, **kwargs)  # type: ignore[arg-type]

    with_target.__signature__ = signature.replace(parameters=[*own, *_OPTIONS])  # type: ignore[attr-defined]
    with_target.__annotations__ = {
        **{p.name: p.annotation for p in own + _OPTIONS},
        "return": signature.return_annotation,
    }
    return with_target


def call(target: Target, fn: Callable[[Any, Metadata], Awaitable[T]]) -> T:
    """Run ``fn(stub, metadata)`` against the API; exit 3 or 4 when the call fails."""
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
        raise typer.Exit(_failed(target, exc)) from None


def _failed(target: Target, exc: grpc.aio.AioRpcError) -> int:
    """Say why the call failed; the exit code: 4 for the caller's input, 3 otherwise."""
    note(f"[red]error[/red] {exc.code().name}: {exc.details()}")
    if exc.code() is grpc.StatusCode.UNAVAILABLE:
        hint = "is the API running there, and does it use TLS? (--ca-file, --tls)"
        note(f"could not reach the API at {target.api}: {hint}")
    return EXIT_USAGE if exc.code() in _INPUT_CODES else EXIT_ERROR
