"""A throwaway PostgreSQL 15 cluster for tests, benchmarks and fault injection.

The cluster lives in a fresh temporary directory: data, server log and unix
socket. It listens on 127.0.0.1 only, on a free port, with fsync and
synchronous commit off (nothing in it needs to survive a power cut), and
trusts every local connection. PostgreSQL refuses to run as root, so when the
current user is root the directory is handed to the ``postgres`` account and
every server command runs through ``runuser -u postgres --``.

Usage::

    with PostgresCluster() as cluster:
        url = cluster.create_database("t1")
        ...
        cluster.restart()   # same data directory, same port

On any server (this cluster, a container, ``STOVEPIPE_DATABASE_URL``),
:class:`MigratedTemplate` runs the Alembic migrations once and then hands out
databases that are ``CREATE DATABASE … TEMPLATE`` copies of the result, which
is much cheaper than migrating each one.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import asyncpg
from sqlalchemy.engine import make_url

from stovepipe.runtime.processes import free_port
from stovepipe.storage.migrate import upgrade_async

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = (
    "install the PostgreSQL 15 server (Debian/Ubuntu: `apt-get install postgresql-15`, "
    "which puts initdb and pg_ctl under /usr/lib/postgresql/15/bin), or point "
    "STOVEPIPE_DATABASE_URL at a running PostgreSQL"
)
SERVER_USER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "pg_isready", "createdb", "dropdb")
_PORT_ATTEMPTS = 3
_POLL_INTERVAL_S = 0.05


class PostgresUnavailable(RuntimeError):
    """No cluster could be started or used; the message says what is missing."""


class PostgresCluster:
    """initdb and pg_ctl in a temporary directory; :attr:`url` works after :meth:`start`.

    ``start``/``stop``/``restart`` may be called any number of times (the
    data survives them); ``destroy`` stops the server and removes everything.

    By default commits are acknowledged before they reach the WAL
    (``synchronous_commit=off``), which is fast and fine for tests that never
    crash the server. ``crash_safe=True`` keeps PostgreSQL's durable commit, so a
    test may ``stop("immediate")`` (a process crash) and lose nothing it was
    told was committed — as a production server would behave.
    """

    def __init__(
        self,
        bin_dir: Path = DEFAULT_BIN_DIR,
        *,
        port: int | None = None,
        base_dir: Path | None = None,
        crash_safe: bool = False,
    ) -> None:
        self.bin_dir = bin_dir
        self.crash_safe = crash_safe
        self.port = port or free_port()
        self._fixed_port = port is not None
        self._base_dir = base_dir
        self._as_server_user = os.geteuid() == 0
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        """The temporary directory holding ``data/``, ``server.log`` and the socket."""
        if self._root is None:
            raise PostgresUnavailable("the cluster has not been started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The ``postgres`` maintenance database, for administration."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        if self._root is None or not (self.data_dir / "postmaster.pid").exists():
            return False
        status = subprocess.run(
            self._command("pg_ctl", "status", "-D", str(self.data_dir)),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def start(self, timeout_s: float = 60.0) -> PostgresCluster:
        """Create the cluster on first use, start the server, wait until it accepts connections."""
        self._check_installation()
        if self._root is None:
            self._root = self._make_root()
            self._initdb()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._start_server(timeout_s)
                return self
            except PostgresUnavailable:
                if self._fixed_port or attempt == _PORT_ATTEMPTS or not self._port_taken():
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, ``smart`` or ``immediate``, which is a simulated crash)."""
        if self._root is None or not (self.data_dir / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def restart(self, timeout_s: float = 60.0) -> None:
        """Stop and start on the same data directory and port."""
        self.stop()
        self._start_server(timeout_s)

    def destroy(self) -> None:
        """Stop the server at once and delete the directory; safe to call twice."""
        if self._root is None:
            return
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template``, if given) and return its URL."""
        copy = [f"--template={template}"] if template else []
        self._run("createdb", *self._client_args(), *copy, name)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever is still connected."""
        self._run("dropdb", *self._client_args(), "--force", "--if-exists", name)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    def _check_installation(self) -> None:
        missing = [tool for tool in _TOOLS if not (self.bin_dir / tool).is_file()]
        if missing:
            raise PostgresUnavailable(
                f"{', '.join(missing)} not found in {self.bin_dir}; {INSTALL_HINT}"
            )
        if not self._as_server_user:
            return
        if shutil.which("runuser") is None:
            raise PostgresUnavailable(
                "running as root, PostgreSQL must run as another user, and runuser "
                "(util-linux) is not installed"
            )
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and there is no {SERVER_USER!r} user to run PostgreSQL as; "
                f"{INSTALL_HINT}"
            ) from None

    def _make_root(self) -> Path:
        root = Path(tempfile.mkdtemp(prefix="stovepipe-pg-", dir=self._base_dir))
        if self._as_server_user:
            shutil.chown(root, SERVER_USER, SERVER_USER)
            blocked = _first_untraversable_parent(root)
            if blocked is not None:
                shutil.rmtree(root, ignore_errors=True)
                raise PostgresUnavailable(
                    f"the {SERVER_USER} user cannot reach {root}: {blocked} is not "
                    "world-searchable; pass base_dir (e.g. /tmp) or set TMPDIR"
                )
        return root

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def _start_server(self, timeout_s: float) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",  # the machine never crashes in a test, only the server
                "-c max_connections=300",
                *(() if self.crash_safe else ("-c synchronous_commit=off",)),
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(max(1, int(timeout_s))),
        )
        self._wait_until_ready(timeout_s)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        probe = [str(self.bin_dir / "pg_isready"), *self._client_args(), "-d", "postgres"]
        while True:
            if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise PostgresUnavailable(
                    f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections within "
                    f"{timeout_s:.0f}s; server log:\n{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _port_taken(self) -> bool:
        log = self._log_tail()
        return "could not bind" in log or "Address already in use" in log

    def _client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER]

    def _command(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        if self._as_server_user:
            return ["runuser", "-u", SERVER_USER, "--", *argv]
        return argv

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            check=False,
            cwd=self._root or None,
        )
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            log = self._log_tail() if tool == "pg_ctl" else ""
            raise PostgresUnavailable(
                f"{tool} exited with {done.returncode}: {output}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, PostgresUnavailable):
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _first_untraversable_parent(path: Path) -> Path | None:
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            return parent
    return None


async def admin_execute(admin_url: str, *statements: str) -> None:
    """Run ``statements`` one by one on ``admin_url`` (outside any transaction)."""
    parsed = make_url(admin_url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class MigratedTemplate:
    """A database migrated once, and copies of it on demand.

    :meth:`prepare` creates the template and runs every migration on it, then
    closes it to connections (PostgreSQL copies a template only while nobody
    is connected to it). :meth:`create` is then one ``CREATE DATABASE …
    TEMPLATE``; :meth:`drop` disconnects whoever is left and drops a copy.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"stovepipe_template_{uuid.uuid4().hex[:8]}"
        self._prepared = asyncio.Lock()
        self._ready = False

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    async def prepare(self) -> MigratedTemplate:
        """Create and migrate the template; a no-op after the first call."""
        async with self._prepared:
            if self._ready:
                return self
            await admin_execute(self.admin_url, f'CREATE DATABASE "{self.name}"')
            await upgrade_async(self.url(self.name))
            await admin_execute(
                self.admin_url,
                f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false IS_TEMPLATE true',
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
            )
            self._ready = True
            return self

    async def create(self, name: str | None = None) -> str:
        """A fresh, migrated database (``name`` or a random one); its URL."""
        await self.prepare()
        name = name or f"stovepipe_{uuid.uuid4().hex[:12]}"
        await admin_execute(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return self.url(name)

    async def drop(self, url: str) -> None:
        """Drop a database made by :meth:`create` (or any other), connections and all."""
        name = make_url(url).database
        await admin_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def discard(self) -> None:
        """Drop the template itself (when the server outlives the tests)."""
        if self._ready:
            await admin_execute(
                self.admin_url,
                f'ALTER DATABASE "{self.name}" WITH IS_TEMPLATE false',
                f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
            )
            self._ready = False
