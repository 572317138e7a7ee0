"""A throwaway PostgreSQL cluster on a free loopback port.

PostgreSQL refuses to run as root, so when we are root the cluster's files are
owned by ``postgres`` and every server command runs through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = (
    "PostgreSQL 15 server binaries are needed under /usr/lib/postgresql/15/bin "
    "(Debian: `apt-get install postgresql-15`), or set STOVEPIPE_DATABASE_URL to a running server"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be started; the message says what to install."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; ``url`` is ready after :meth:`start`."""

    def __init__(self, bin_dir: Path = DEFAULT_BIN, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="stovepipe-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else argv

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self, timeout_s: float = 60.0) -> PostgresCluster:
        if not (self.bin_dir / "initdb").exists():
            raise PostgresUnavailable(INSTALL_HINT)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        self._start_server(timeout_s)
        return self

    def _start_server(self, timeout_s: float) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise PostgresUnavailable(f"PostgreSQL did not accept connections in {timeout_s:.0f}s")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start on the same data and port (fault injection)."""
        self.stop()
        self._start_server(60.0)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        self._run(
            "dropdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "--force", name
        )
