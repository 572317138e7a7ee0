"""How the API listens: TLS (optionally mutual) and the rule against plaintext tokens.

``server_credentials`` turns ``api.tls`` into grpc credentials: the server's
chain and key, and with ``client_ca_file`` a required, verified client
certificate. ``check_listener`` refuses a configuration that would send bearer
tokens in the clear over a network: tokens configured, no TLS, an address other
than loopback, and no ``api.allow_insecure: true``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc

from stovepipe.config.sections import ApiConfig, TlsConfig


class TransportError(Exception):
    """The API cannot listen as configured; the message says what to change."""


def server_credentials(tls: TlsConfig | None) -> grpc.ServerCredentials | None:
    """Credentials for ``tls``, or None for plaintext; ``TransportError`` for unreadable files."""
    if tls is None:
        return None
    chain = _read("api.tls.cert_file", tls.cert_file)
    key = _read("api.tls.key_file", tls.key_file)
    client_ca = _read("api.tls.client_ca_file", tls.client_ca_file) if tls.client_ca_file else None
    try:
        return grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
    except (ValueError, TypeError) as exc:
        raise TransportError(f"api.tls: the certificate or key is not usable: {exc}") from None


def check_listener(api: ApiConfig, *, has_tokens: bool) -> None:
    """Raise ``TransportError`` when tokens would cross a network in plaintext."""
    if not has_tokens or api.tls is not None or api.allow_insecure or is_loopback(api.listen):
        return
    raise TransportError(
        f"refusing to serve API tokens in plaintext on {api.listen}: anyone on the network "
        "could read them. Configure api.tls (cert_file, key_file), listen on a loopback "
        "address such as 127.0.0.1, or set api.allow_insecure: true if something in front "
        "(a mesh sidecar, a TLS-terminating proxy) already encrypts the traffic."
    )


def is_loopback(address: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8, ``[::1]`` and Unix sockets; False for the rest."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0].strip("[]").lower()
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        host = host.removeprefix(scheme).lstrip("/")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(setting: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TransportError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise TransportError(f"{setting}: {path} is empty")
    return data
