"""Command-line options every reference extension server shares: how it authenticates
its callers, and how it authenticates itself to a server it calls.

A token is given by reference only (``--token-env NAME`` or ``--token-file
PATH``), never on the command line, which any local user can read in
``/proc/<pid>/cmdline``. Reading it goes through ``stovepipe.config``'s secret
reader, so errors name the variable or file and never a value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stovepipe.config import SecretRef, SecretUnavailable, resolve_secret
from stovepipe.grpcutil import ChannelSecurity, ServerSecurity, ServerTls
from stovepipe.grpcutil.auth import check_token


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--token-env``/``--token-file``, ``--tls-cert``/``--tls-key``/``--client-ca`` and
    ``--allow-insecure``."""
    group = parser.add_argument_group(
        "authentication of callers",
        "Give a token, a client CA (mutual TLS) or both. Without either the server only "
        "listens on loopback, unless --allow-insecure.",
    )
    token = group.add_mutually_exclusive_group()
    token.add_argument(
        "--token-env", metavar="NAME", help="environment variable holding the bearer token"
    )
    token.add_argument(
        "--token-file", metavar="PATH", type=Path, help="file holding the bearer token"
    )
    group.add_argument("--tls-cert", metavar="PATH", type=Path, help="server certificate (PEM)")
    group.add_argument("--tls-key", metavar="PATH", type=Path, help="server private key (PEM)")
    group.add_argument(
        "--client-ca",
        metavar="PATH",
        type=Path,
        help="CA (PEM) that must have signed every caller's certificate (mutual TLS)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="serve a non-loopback address without authenticating callers (not recommended)",
    )


def server_security(args: argparse.Namespace) -> ServerSecurity:
    """The ``ServerSecurity`` the options describe; ``ValueError`` saying what is wrong."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.client_ca is not None and args.tls_cert is None:
        raise ValueError("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)")
    tls = (
        ServerTls(args.tls_cert, args.tls_key, args.client_ca)
        if args.tls_cert is not None
        else None
    )
    return ServerSecurity(
        token=_token(args.token_env, args.token_file, "the server's bearer token"),
        tls=tls,
        allow_insecure=args.allow_insecure,
    )


def add_client_arguments(parser: argparse.ArgumentParser, prefix: str, server: str) -> None:
    """``--<prefix>-token-env``/``-token-file``, ``--<prefix>-ca``, ``--<prefix>-cert`` and
    ``--<prefix>-key``: how to authenticate to ``server``."""
    group = parser.add_argument_group(f"authentication to the {server}")
    token = group.add_mutually_exclusive_group()
    token.add_argument(
        f"--{prefix}-token-env",
        metavar="NAME",
        help=f"environment variable holding the {server}'s bearer token",
    )
    token.add_argument(
        f"--{prefix}-token-file",
        metavar="PATH",
        type=Path,
        help=f"file holding the {server}'s bearer token",
    )
    group.add_argument(
        f"--{prefix}-ca",
        metavar="PATH",
        type=Path,
        help=f"CA (PEM) that signed the {server}'s certificate; turns TLS on",
    )
    group.add_argument(
        f"--{prefix}-cert", metavar="PATH", type=Path, help="client certificate (PEM)"
    )
    group.add_argument(f"--{prefix}-key", metavar="PATH", type=Path, help="client key (PEM)")


def client_security(args: argparse.Namespace, prefix: str) -> ChannelSecurity:
    """The ``ChannelSecurity`` the options with ``prefix`` describe; ``ValueError``."""
    option = prefix.replace("-", "_")
    cert, key = getattr(args, f"{option}_cert"), getattr(args, f"{option}_key")
    if (cert is None) != (key is None):
        raise ValueError(f"--{prefix}-cert and --{prefix}-key go together")
    return ChannelSecurity(
        token=_token(
            getattr(args, f"{option}_token_env"),
            getattr(args, f"{option}_token_file"),
            f"the --{prefix} bearer token",
        ),
        ca_file=getattr(args, f"{option}_ca"),
        cert_file=cert,
        key_file=key,
    )


def _token(env: str | None, file: Path | None, what: str) -> str | None:
    if env is None and file is None:
        return None
    ref = SecretRef(what, env=env, file=None if file is None else str(file))
    try:
        return check_token(resolve_secret(ref), what)
    except SecretUnavailable as exc:
        raise ValueError(str(exc)) from None
