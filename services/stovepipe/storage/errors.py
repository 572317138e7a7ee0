"""Storage errors, and the one place where driver exceptions become them.

Hierarchy::

    StovepipeError                      (stovepipe.domain.errors)
    └── StorageError                    a database fault no retry will cure
        ├── VersionMismatch             a CAS lost the race            retryable
        ├── AlreadyExists               a create-only row is there;    not retryable
        │                               ``.existing`` is the stored row
        └── StorageUnavailable          refused or lost connection,    retryable
                                        timeouts, SQLite busy/locked,
                                        PostgreSQL serialization
                                        failures and deadlocks

``Store`` passes every exception raised inside a database call through
:func:`translate`, so callers see these classes and never a driver's.
:func:`is_retryable` is what the messaging layer asks; it also accepts a raw
driver exception, for code that talks to an engine without a ``Store``.
Input the caller got wrong (a string too long for its column, a naive
datetime, a malformed page token) is ``stovepipe.domain.InvalidInput``.
"""

from __future__ import annotations

import sqlite3
from typing import Generic, TypeVar

from sqlalchemy import exc as sa_exc

from stovepipe.domain.errors import StovepipeError

T = TypeVar("T")

# PostgreSQL SQLSTATE classes and codes after which the same statement can
# succeed: connection exceptions (08), insufficient resources (53: too many
# connections, out of memory or disk), operator intervention (57: shutdown,
# crash recovery, cannot connect now, statement timeout), and transaction
# rollbacks caused by concurrency (40001 serialization, 40P01 deadlock).
_PG_TRANSIENT_CLASSES = frozenset({"08", "53", "57"})
_PG_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03"})

# SQLite primary result codes: BUSY (5) once busy_timeout has run out,
# LOCKED (6) for a conflict inside one shared cache, PROTOCOL (15) for a
# lost race on the WAL index.
_SQLITE_TRANSIENT_CODES = frozenset({5, 6, 15})

_DRIVER_ERRORS = (sa_exc.SQLAlchemyError, sqlite3.Error)


class StorageError(StovepipeError):
    """Base of storage failures; raised as is for faults a retry will not cure."""


class VersionMismatch(StorageError):
    """The row's version was not the one the writer read: reload and decide again."""


class AlreadyExists(StorageError, Generic[T]):
    """A create-only row already exists; ``existing`` is the stored one, never overwritten."""

    def __init__(self, message: str, existing: T) -> None:
        super().__init__(message)
        self.existing: T = existing


class StorageUnavailable(StorageError):
    """The database could not serve the call now; the same call may succeed later."""


def translate(exc: BaseException) -> BaseException:
    """Return the storage error for ``exc``, or ``exc`` itself when it is not a database error.

    Stovepipe's own errors pass through unchanged, including an ``InvalidInput``
    raised while SQLAlchemy was binding parameters.
    """
    if isinstance(exc, StovepipeError):
        return exc
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, StovepipeError):
        return exc.orig
    if _is_transient(exc):
        return StorageUnavailable(_describe(exc))
    if isinstance(exc, _DRIVER_ERRORS) or _is_asyncpg_error(exc):
        return StorageError(_describe(exc))
    return exc


def is_retryable(exc: BaseException) -> bool:
    """True for a lost CAS race and for an unavailable database, raw or translated."""
    return isinstance(translate(exc), VersionMismatch | StorageUnavailable)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or _is_transient_driver_error(exc.orig)
    return _is_transient_driver_error(exc)


def _is_transient_driver_error(err: BaseException | None) -> bool:
    if isinstance(err, OSError | TimeoutError):
        return True
    sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _PG_TRANSIENT_CLASSES or sqlstate in _PG_TRANSIENT_CODES
    sqlite_code = getattr(err, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _SQLITE_TRANSIENT_CODES
    return False


def _is_asyncpg_error(exc: BaseException) -> bool:
    """asyncpg ships no type information, so its errors are recognised by their module."""
    return type(exc).__module__.split(".")[0] == "asyncpg"


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    source = orig if orig is not None else exc
    text = " ".join(str(source).split()) or type(source).__name__
    return f"{type(source).__name__}: {text}"
