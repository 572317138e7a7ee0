"""Engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), configured the one way Stovepipe needs.

SQLite notes. Every connection gets ``busy_timeout`` (a writer waits for the
lock instead of failing at once), ``foreign_keys=ON``, ``journal_mode=WAL``
(readers never block the one writer, so several worker processes can share a
file) and ``synchronous=NORMAL`` (with WAL a power cut may lose the last
commits but never corrupts the file; a process crash loses nothing).
The file's directory is created if missing, so the relative default
``sqlite:///.stovepipe/stovepipe.db`` works from a fresh checkout. The
sqlite3 module's own transaction handling is switched off and SQLAlchemy
emits ``BEGIN`` itself: without that, DDL and reads run outside any
transaction, which would make a migration non-atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stovepipe.domain.errors import InvalidInput

POSTGRES_DRIVER = "postgresql+asyncpg"
SQLITE_DRIVER = "sqlite+aiosqlite"
SQLITE_BUSY_TIMEOUT_S = 30.0
DEFAULT_POOL_SIZE = 20
"""Connections one process keeps open: the number of database calls it runs at once."""
SQLITE_BEGIN_OPTION = "stovepipe_sqlite_begin"
"""Execution option naming the statement that opens a SQLite transaction (default ``BEGIN``)."""

_SQLITE_BUSY = 5
_WAL_SWITCH_ATTEMPTS = 3

_POSTGRES_ALIASES = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)
_SQLITE_ALIASES = frozenset({"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"})


def parse_url(url: str) -> URL:
    """``url`` with the async driver of its backend; ``InvalidInput`` for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"not a database URL: {exc}") from None
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername=POSTGRES_DRIVER)
    if parsed.drivername in _SQLITE_ALIASES:
        return parsed.set(drivername=SQLITE_DRIVER)
    raise InvalidInput(
        f"unsupported database URL scheme {parsed.drivername!r}; use "
        "postgresql://host/db (asyncpg) or sqlite:///path/to/file.db (aiosqlite)"
    )


def normalize_url(url: str) -> str:
    """``url`` rewritten for the async driver, password kept (for handing to another process)."""
    return parse_url(url).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return parse_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str,
    *,
    sqlite_busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` (``postgresql[+asyncpg]://`` or ``sqlite[+aiosqlite]:///``).

    ``sqlite_busy_timeout_s`` bounds how long a SQLite writer waits for the
    file lock before the call fails with ``StorageUnavailable``.
    ``pool_size`` is how many PostgreSQL connections the process keeps: the
    number of database calls it runs at once (a caller beyond that waits for
    a connection rather than opening a burst of new ones).
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sqlite_busy_timeout_s)
    engine = create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        pool_recycle=1800,
        connect_args={"timeout": 10, "server_settings": {"application_name": "stovepipe"}},
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no connection the server has already closed, without a round trip.

    A pre-ping (``SELECT 1`` on every checkout) cost a fifth of the gate
    path's time. When PostgreSQL restarts or terminates a backend it closes
    the socket, and asyncpg marks the connection closed as soon as the event
    loop sees that, so asking the driver is free. Raising
    ``DisconnectionError`` makes the pool discard it and take another. The
    rarer case (the socket dies between this check and the statement) fails
    the statement with an invalidated connection, which the store retries
    once for reads and reports as ``StorageUnavailable`` (retryable) for writes.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _sqlite_engine(url: URL, busy_timeout_s: float) -> AsyncEngine:
    in_memory = url.database in (None, "", ":memory:")
    pool: dict[str, Any] = (
        {}
        if in_memory
        else {"pool_size": 5, "max_overflow": 5, "pool_timeout": max(30.0, busy_timeout_s)}
    )
    if url.database and not in_memory and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_s}, **pool)
    busy_timeout_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(
            connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "BEGIN")
        )

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (a persistent setting) unless it is already.

    When several connections switch a fresh file at once, SQLite refuses all
    but one with SQLITE_BUSY at once, without waiting out the busy timeout
    (two shared locks that both want to become exclusive would deadlock). The
    refused connection has dropped its lock by then, so a retry waits properly.
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    for attempt in range(1, _WAL_SWITCH_ATTEMPTS + 1):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY
            if not busy or attempt == _WAL_SWITCH_ATTEMPTS:
                raise
