"""Who may call a server, and how a client proves who it is: bearer tokens and (m)TLS.

Server side. ``ServerSecurity`` says how a server authenticates its callers:
a shared bearer token (``BearerTokenInterceptor``, compared in constant time),
a client certificate signed by a given CA (mutual TLS), or both. Health checks
stay open so probes and supervisors work without credentials; every other
method, reflection included, needs the token. ``ServerSecurity.check_listen``
refuses to serve without authentication anywhere but loopback, unless the
operator explicitly allowed it.

Client side. ``ChannelSecurity`` opens a channel that presents the token
(``authorization: Bearer <token>``) and, with TLS, verifies the server and
presents a client certificate. Over TLS the token travels as gRPC call
credentials; over plaintext gRPC refuses call credentials, so a client
interceptor adds the same header.

A token is never logged, never part of an error message and never in a
``repr``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Methods under this prefix answer without credentials (liveness and readiness probes)."""

MIN_TOKEN_LENGTH = 16

_LOCAL_SCHEMES = ("unix:", "unix-abstract:")
_log = logging.getLogger(__name__)


class InsecureListen(ValueError):
    """A server was asked to serve a non-loopback address without authenticating callers."""


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``host:port``, ``[v6]:port`` or ``unix:path``) is reachable
    only from this machine. A host name other than ``localhost`` counts as remote."""
    if address.startswith(_LOCAL_SCHEMES):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str, what: str) -> str:
    """``token`` without surrounding whitespace; ``ValueError`` (naming ``what``, never the
    value) when it is too short to be a secret."""
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{what} is shorter than {MIN_TOKEN_LENGTH} characters; use a random secret "
            "(for example `openssl rand -hex 32`)"
        )
    return token


# Server side


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call without ``authorization: Bearer <token>`` with UNAUTHENTICATED,
    except health checks."""

    def __init__(self, token: str, *, open_prefixes: Sequence[str] = (HEALTH_PREFIX,)) -> None:
        self._expected = check_token(token, "the bearer token").encode()
        self._open = tuple(open_prefixes)

    def _problem(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        """Why the call is refused; ``None`` when it carries the token."""
        headers = [str(value) for key, value in metadata or () if key == "authorization"]
        if not headers:
            return "no bearer token"
        for header in headers:
            scheme, _, credential = header.strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                credential.strip().encode(), self._expected
            ):
                return None
        return "wrong bearer token"

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if method.startswith(self._open):
            return await continuation(handler_call_details)
        problem = self._problem(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        if problem is None:
            return handler
        return _refusal(handler, method, problem)


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any] | None, method: str, problem: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        _log.warning("refused %s from %s: %s", method, context.peer(), problem)
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{problem}: send 'authorization: Bearer <token>' with the token this "
            "server was started with",
        )

    streams_in = handler is not None and handler.request_streaming
    streams_out = handler is not None and handler.response_streaming
    if streams_in and streams_out:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if streams_in:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if streams_out:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


@dataclass(frozen=True)
class ServerTls:
    """Serve TLS with this certificate chain and key (PEM); with ``client_ca_file``, also
    require every client to present a certificate that CA signed (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        client_ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class ServerSecurity:
    """How a server authenticates its callers. The default authenticates nobody, which
    ``check_listen`` accepts on loopback only."""

    token: str | None = field(default=None, repr=False)
    tls: ServerTls | None = None
    allow_insecure: bool = False

    @property
    def authenticates(self) -> bool:
        """Whether a caller must prove who it is (a token or a client certificate)."""
        return self.token is not None or (
            self.tls is not None and self.tls.client_ca_file is not None
        )

    def check_listen(self, address: str) -> None:
        """Raise ``InsecureListen`` for an unauthenticated non-loopback ``address``; log a
        warning for what is allowed but weak."""
        if not self.authenticates and not is_loopback(address):
            if not self.allow_insecure:
                raise InsecureListen(
                    f"refusing to serve {address} without authentication: anyone who can "
                    "reach it could call it. Give a token (--token-env NAME or --token-file "
                    "PATH) or a client CA for mutual TLS (--tls-cert, --tls-key, --client-ca), "
                    "listen on 127.0.0.1, or pass --allow-insecure to accept the risk"
                )
            _log.warning(
                "serving %s WITHOUT authentication (--allow-insecure): anyone who can reach "
                "it can call it",
                address,
            )
        elif not self.authenticates:
            _log.warning(
                "serving %s without authentication: any process on this machine can call "
                "it; give a token or a client CA to require one",
                address,
            )
        elif self.tls is None and not is_loopback(address):
            _log.warning(
                "serving %s with a bearer token but without TLS: the token crosses the "
                "network in clear text; add --tls-cert and --tls-key",
                address,
            )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        return [BearerTokenInterceptor(self.token)] if self.token is not None else []

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials for ``add_secure_port``; ``None`` for plaintext."""
        return self.tls.credentials() if self.tls is not None else None


# Client side


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client proves who it is to a server: a bearer token and/or TLS.

    TLS is used when ``ca_file`` (the CA that signed the server's certificate; the
    system roots when unset) or a client certificate is given; ``cert_file`` and
    ``key_file`` are the client's own certificate for mutual TLS.
    """

    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (without the token); ``None`` for plaintext."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


class _BearerHeader:
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._header)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_BearerHeader, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_BearerHeader, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnary(_BearerHeader, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_BearerHeader, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def bearer_token_interceptors(token: str) -> list[object]:
    """Client interceptors adding ``authorization: Bearer <token>`` to every call on a
    plaintext channel. One per call shape: grpc.aio files each interceptor under the
    first shape it implements only."""
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token), _StreamStream(token)]
